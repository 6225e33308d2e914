"""`--report_to tensorboard`: a training run writes event files holding the losses and the validation grid."""

import pytest

from test_train_diffusion import NEW_TEXT_TOWER, TINY
from training.train_diffusion import main

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator", reason="pip install -e '.[test]' (tensorboard)")


def test_tensorboard_events_hold_losses_and_the_validation_grid(tmp_path):
    result = main(TINY + NEW_TEXT_TOWER + ["--max_train_steps", "4", "--validation_steps", "4", "--checkpointing_steps", "4",
                                            "--report_to", "tensorboard", "--output_dir", str(tmp_path)])
    files = list((tmp_path / "logs").rglob("events.out.tfevents.*"))
    assert files, f"no event files under {tmp_path / 'logs'}"
    scalars, images = {}, {}
    for file in files:
        events = event_accumulator.EventAccumulator(str(file), size_guidance={"images": 0, "scalars": 0}).Reload()
        scalars.update({tag: events.Scalars(tag) for tag in events.Tags()["scalars"]})
        images.update({tag: events.Images(tag) for tag in events.Tags()["images"]})
    assert [e.step for e in scalars["loss"]] == [1, 2, 3, 4]
    assert [round(e.value, 4) for e in scalars["loss"]] == [round(loss, 4) for _, loss in result["loss_history"]]
    grid = images["validation"][-1]
    assert grid.step == 4 and grid.width > 32 and grid.height > 32  # a captioned grid of the validation prompts

"""Long-running commands show progress, and `--quiet` turns it off: data builds (`hf-textimg data`) and training."""

import datasets

from hf_textimg.cli import main as cli_main
from test_train_diffusion import NEW_TEXT_TOWER, TINY
from training.train_diffusion import main as train_main

SMALL = ["--num-train", "12", "--num-validation", "4", "--num-heldout", "4"]


def test_data_build_shows_progress_unless_quiet(tmp_path, capsys):
    assert cli_main(["data", "shapes", "--out", str(tmp_path / "a"), *SMALL]) == 0
    assert "Shapes train (32 px)" in capsys.readouterr().err
    assert cli_main(["data", "shapes", "--out", str(tmp_path / "b"), "--quiet", *SMALL]) == 0
    captured = capsys.readouterr()
    assert "Shapes train" not in captured.err and "Built shapes" in captured.out  # the result line stays
    assert datasets.is_progress_bar_enabled()  # --quiet does not leave the process silenced


def test_training_shows_steps_unless_quiet(tmp_path, capsys):
    run = TINY + NEW_TEXT_TOWER + ["--max_train_steps", "2", "--validation_steps", "2", "--checkpointing_steps", "2"]
    train_main(run + ["--output_dir", str(tmp_path / "a")])
    assert "Steps" in capsys.readouterr().err
    try:
        result = train_main(run + ["--output_dir", str(tmp_path / "b"), "--quiet"])
        assert "Steps" not in capsys.readouterr().err
        assert len(result["loss_history"]) == 2  # it trained all the same
    finally:
        datasets.enable_progress_bars()  # a quiet run silences datasets' bars for the rest of its process

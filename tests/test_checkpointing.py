import json
import random

import numpy as np
import pytest
import torch

from hf_textimg.training.checkpointing import (
    list_checkpoints,
    load_tree,
    resolve_resume_path,
    rng_state,
    save_tree,
    set_rng_state,
)


def test_optimizer_state_round_trips_without_pickle(tmp_path):
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(3):
        model(torch.randn(5, 4)).square().mean().backward()
        opt.step()
    save_tree(opt.state_dict(), tmp_path, "optimizer")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["optimizer.json", "optimizer.safetensors"]
    json.loads((tmp_path / "optimizer.json").read_text())  # plain JSON, no pickle

    restored = torch.optim.AdamW(torch.nn.Linear(4, 3).parameters(), lr=1.0)
    restored.load_state_dict(load_tree(tmp_path, "optimizer"))
    a, b = opt.state_dict(), restored.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for i in a["state"]:
        for k in a["state"][i]:
            assert torch.equal(a["state"][i][k], b["state"][i][k])


def test_rng_state_round_trip(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    save_tree(rng_state(), tmp_path, "rng")
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    set_rng_state(load_tree(tmp_path, "rng"))
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_latest_ignores_incomplete_checkpoints(tmp_path):
    for step in (10, 200, 30):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    (tmp_path / ".tmp-checkpoint-300").mkdir()  # a save that crashed half-way
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-10", "checkpoint-30", "checkpoint-200"]
    assert resolve_resume_path("latest", str(tmp_path)).name == "checkpoint-200"
    assert resolve_resume_path("latest", str(tmp_path / "empty")) is None
    with pytest.raises(ValueError, match="not a checkpoint folder"):
        resolve_resume_path(str(tmp_path / "checkpoint-999"), str(tmp_path))

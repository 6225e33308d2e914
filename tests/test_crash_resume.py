"""Crash-safe training: a run killed with SIGKILL resumes from its latest complete checkpoint and ends exactly where
an uninterrupted run of the same length ends; a checkpoint cut short mid-save is never picked by "latest".

The script is train_diffusion.py with a trained text tower and EMA, because it uses every random stream a resume
must restore: caption dropout, noise and timesteps (torch RNG), the data order (seedable sampler, resumed mid-epoch
with skip_first_batches), and the optimizer, scheduler and EMA states. The runs are compared through their final
checkpoint folder (raw weights, EMA, AdamW moments, scheduler and RNG state), which must be bit-identical.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest
import torch
from mp_launch import REPO, harness_command, save_tiny_concept_model, subprocess_env
from safetensors.torch import load_file

from hf_textimg.training.checkpointing import list_checkpoints, resolve_resume_path, verify_checkpoint
from training.train_diffusion import main

STEPS, EVERY, LIMIT = 12, 3, 2
ARGS = [
    "--dataset_name", "shapes", "--num_shapes_train", "96", "--num_shapes_eval", "16", "--train_batch_size", "16",
    "--max_length", "16", "--train_text_encoder", "--use_ema", "--ema_decay", "0.9", "--unet_block_out_channels", "16", "32",
    "--unet_attention_head_dim", "8", "--unet_norm_num_groups", "8", "--learning_rate", "2e-3", "--lr_scheduler", "cosine",
    "--lr_warmup_steps", "2", "--max_train_steps", str(STEPS), "--checkpointing_steps", str(EVERY),
    "--checkpoints_total_limit", str(LIMIT), "--validation_steps", str(STEPS), "--eval_prompts_per_category", "0",
    "--eval_num_inference_steps", "2", "--validation_images_per_prompt", "1", "--validation_prompts", "a red circle",
]
# 96 images / batch 16 = 6 batches per epoch: 12 steps cross an epoch boundary, and a resume lands mid-epoch.


@pytest.fixture(scope="module")
def concept_dir(tmp_path_factory):
    # a fixed tokenizer: every run (killed, resumed, reference) must tokenize alike
    return save_tiny_concept_model(tmp_path_factory.mktemp("concept"))


def args_for(concept_dir, output_dir, *extra) -> list[str]:
    return ARGS + ["--concept_model_path", str(concept_dir), "--output_dir", str(output_dir), *extra]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, concept_dir):
    """The uninterrupted run."""
    out = tmp_path_factory.mktemp("uninterrupted")
    assert main(args_for(concept_dir, out))["global_step"] == STEPS
    return out


def assert_same_final_state(run_dir, reference_dir):
    """Final checkpoints equal file by file (tensors bit-exact), and so do the shipped pipelines' weights."""
    ours, theirs = run_dir / f"checkpoint-{STEPS}", reference_dir / f"checkpoint-{STEPS}"
    names = sorted(p.name for p in theirs.iterdir())
    assert sorted(p.name for p in ours.iterdir()) == names
    for name in names:
        if name.endswith(".safetensors"):
            a, b = load_file(ours / name), load_file(theirs / name)
            assert set(a) == set(b), name
            different = [k for k in a if not torch.equal(a[k], b[k])]
            assert not different, f"{name}: {len(different)} tensors differ, e.g. {different[:3]}"
        elif name == "trainer_state.json":
            a, b = (json.loads((d / name).read_text()) for d in (ours, theirs))
            assert (a["global_step"], a["epoch"], a["batch_in_epoch"]) == (b["global_step"], b["epoch"], b["batch_in_epoch"])
        elif name not in ("rng_state_0.json", "manifest.json") and name.endswith(".json"):  # the manifest hashes trainer_state.json (its clock)
            assert (ours / name).read_text() == (theirs / name).read_text(), name
    assert verify_checkpoint(ours) is None  # and it is intact by its own manifest
    for component in ("unet/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors"):
        a, b = load_file(run_dir / component), load_file(reference_dir / component)
        assert all(torch.equal(a[k], b[k]) for k in b), component


def start(concept_dir, out, dump, **env) -> subprocess.Popen:
    command = harness_command("diffusion", dump, args_for(concept_dir, out))
    return subprocess.Popen(command, cwd=REPO, env=subprocess_env(**env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_sigkill_mid_run_then_resume_latest_equals_the_uninterrupted_run(reference, concept_dir, tmp_path):
    out = tmp_path / "run"
    proc = start(concept_dir, out, tmp_path / "dump", MP_STEP_SLEEP=0.25)  # slowed down, so the kill lands mid-run
    deadline = time.monotonic() + 120
    try:
        while not (out / "checkpoint-6").is_dir():
            assert proc.poll() is None, f"the run ended before it could be killed:\n{proc.stdout.read()[-3000:]}"
            assert time.monotonic() < deadline, "no checkpoint-6 after 120 s"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    latest = resolve_resume_path("latest", str(out))
    assert latest is not None and STEPS > int(latest.name.split("-")[1]) >= 6
    assert not (out / "model_index.json").exists()  # it really was killed before the end

    result = main(args_for(concept_dir, out, "--resume_from_checkpoint", "latest"))
    assert result["global_step"] == STEPS and result["loss_history"][0][0] == int(latest.name.split("-")[1]) + 1
    assert_same_final_state(out, reference)
    # --checkpoints_total_limit keeps the newest N, in the resumed run as in the uninterrupted one
    assert [p.name for p in list_checkpoints(out)] == ["checkpoint-9", "checkpoint-12"]
    assert [p.name for p in list_checkpoints(reference)] == ["checkpoint-9", "checkpoint-12"]


def test_a_checkpoint_cut_short_mid_save_is_never_resumed_from(reference, concept_dir, tmp_path):
    out = tmp_path / "run"
    # the process SIGKILLs itself while writing checkpoint-6: model weights are in .tmp-checkpoint-6, the rest is not
    proc = start(concept_dir, out, tmp_path / "dump", MP_KILL_IN_SAVE=6)
    output, _ = proc.communicate(timeout=180)
    assert proc.returncode == -signal.SIGKILL, output[-3000:]
    (partial,) = out.glob(".tmp-checkpoint-6-*")  # a name of its own, so no other save can share it
    assert (partial / "unet.safetensors").is_file() and not (partial / "trainer_state.json").exists()
    assert not (out / "checkpoint-6").exists()
    assert [p.name for p in list_checkpoints(out)] == ["checkpoint-3"]
    assert resolve_resume_path("latest", str(out)).name == "checkpoint-3"

    (out / ".tmp-checkpoint-7").mkdir()  # left by an earlier crash at a step this run never saves

    main(args_for(concept_dir, out, "--resume_from_checkpoint", "latest"))
    assert_same_final_state(out, reference)
    assert not partial.exists()  # the next good save removed the half-written folder
    assert not list(out.glob(".tmp-checkpoint-*"))  # and the next good save cleared the other leftovers

"""Every training script under `accelerate launch --multi_gpu --num_processes 2` (gloo on CPU), in real processes.

For each script one 2-process run (batch B per process) and one 1-process run (batch 2B) go through
`tests/mp_harness.py`, which dumps each process's final weights, the gradients of the first optimizer step, the
pixel checksums of every batch and the files each process wrote. The tests then check:

- both ranks end with bit-identical weights (EMA included);
- 2 x B equals 1 x 2B: the same samples in the same order (exact), the same first-step gradients (averaged over
  processes, then clipped) and the same weights after 4 AdamW steps, within the tolerances below;
- the contrastive loss gathers the features of both processes (2B negatives per row);
- only the main process writes: the other rank writes its own RNG state into the checkpoint folder, nothing else;
  only the main process pushes to the Hub (`--push_to_hub`, with the Hub's API answered locally);
- the launch ends with exit code 0 and no process group left (`end_training`); a rank that raises stops the whole
  launch in bounded time; a time budget (--max_train_minutes) stops every process at the same step.

Tolerances (float32 CPU math; the two runs add the same per-sample terms in a different order, through the
all-reduce on one side and a batch mean on the other): each first-step gradient tensor agrees to 1e-4 of its
largest entry (seen: up to 1e-5), and every weight after 4 AdamW steps at lr 1e-3 to 5e-5 absolute (seen: up to
6e-7), while the steps themselves move weights by ~1e-3 each. The gradient check is the one that catches a wrong
averaging (a sum instead of a mean is off by a factor 2, which AdamW alone would almost hide); the data-order check
is exact. Diffusion draws its noise and timesteps per process (each process its own seed, as it should); for this
comparison only, the harness draws them for the global batch and hands each process its slice (MP_GLOBAL_NOISE), so
the test isolates data order and gradient averaging.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from mp_launch import RankDump, harness_command, load_rank, run, save_tiny_concept_model

pytestmark = pytest.mark.multiprocess

STEPS, B = 4, 16
GRAD_RTOL, WEIGHT_ATOL = 1e-4, 5e-5
COMMON = [
    "--dataset_name", "shapes", "--num_shapes_train", "256", "--num_shapes_eval", "32", "--max_eval_samples", "16",
    "--max_length", "16", "--max_train_steps", str(STEPS), "--checkpointing_steps", "2", "--validation_steps", str(STEPS),
    "--lr_scheduler", "constant", "--lr_warmup_steps", "0", "--learning_rate", "1e-3",
]
AUTOENCODER = ["--code_dim", "32", "--encoder_block_out_channels", "8", "16", "16", "--decoder_block_out_channels", "16", "16", "8",
               "--norm_num_groups", "4"]
SCRIPT_ARGS = {
    "concept": ["--text_hidden_size", "32", "--text_num_layers", "1", "--text_num_heads", "2", "--vision_base_channels", "8",
                "--vision_num_stages", "2", "--projection_dim", "32"],
    # with --push_to_hub against a Hub faked at the network layer (MP_FAKE_HUB): who pushes?
    "autoencoder": AUTOENCODER + ["--push_to_hub", "--hub_model_id", "tester/mp-autoencoder"],
    # noise_dim 0: the decoder is deterministic, so the comparison needs no help
    "decoder": ["--objective", "both", "--train_text_encoder", "--noise_dim", "0", "--noise_samples", "1",
                "--decoder_block_out_channels", "16", "16", "8", "--norm_num_groups", "4", "--eval_prompts_per_category", "1"],
    "diffusion": ["--train_text_encoder", "--use_ema", "--ema_decay", "0.9", "--unet_block_out_channels", "16", "32",
                  "--unet_attention_head_dim", "8", "--unet_norm_num_groups", "8", "--eval_prompts_per_category", "0",
                  "--eval_num_inference_steps", "2", "--validation_images_per_prompt", "1", "--validation_prompts", "a red circle"],
}
NEEDS_CONCEPT_MODEL = ("decoder", "diffusion")
LAUNCH_TIMEOUT = 240


@pytest.fixture(scope="module")
def concept_dir(tmp_path_factory):
    return save_tiny_concept_model(tmp_path_factory.mktemp("concept"))


@dataclass
class Runs:
    script: str
    two: list[RankDump]  # the 2-process launch, rank 0 and rank 1
    one: RankDump  # the 1-process run with twice the batch
    out_two: Path  # the 2-process launch's --output_dir


@pytest.fixture(scope="module", params=list(SCRIPT_ARGS))
def runs(request, tmp_path_factory, concept_dir):
    script = request.param
    root = tmp_path_factory.mktemp(f"mp-{script}")
    args = COMMON + SCRIPT_ARGS[script] + (["--concept_model_path", str(concept_dir)] if script in NEEDS_CONCEPT_MODEL else [])
    if script == "concept":
        # Both runs read one tokenizer: a tokenizer trained separately by each run may number tied tokens differently
        # (the tokenizers trainer is multi-threaded), and then the 2x B vs 1x 2B comparison would compare other models.
        args += ["--tokenizer_name", str(concept_dir)]
    env = {"MP_FAKE_HUB": "1", **({"MP_GLOBAL_NOISE": "1"} if script == "diffusion" else {})}
    two = run(harness_command(script, root / "dump2", args + ["--train_batch_size", str(B), "--output_dir", str(root / "out2")], 2),
              LAUNCH_TIMEOUT, **env)
    one = run(harness_command(script, root / "dump1", args + ["--train_batch_size", str(2 * B), "--output_dir", str(root / "out1")], 1),
              LAUNCH_TIMEOUT, **env)
    for name, finished in (("2-process launch", two), ("1-process run", one)):
        assert finished.returncode == 0, f"{script}: {name} failed:\n{finished.output[-4000:]}"
    print(f"{script}: 2 processes {two.seconds:.1f} s, 1 process {one.seconds:.1f} s")
    return Runs(script, [load_rank(root / "dump2", r) for r in (0, 1)], load_rank(root / "dump1", 0), root / "out2")


def test_launch_ends_cleanly(runs):
    for rank, dump in enumerate(runs.two):
        assert dump.info["finished"] and dump.info["world_size"] == 2 and dump.info["rank"] == rank
        assert dump.info["global_step"] == STEPS
        assert dump.info["process_group_alive_after_main"] is False  # end_training destroyed the process group
    assert runs.one.info["world_size"] == 1 and runs.one.info["global_step"] == STEPS


def test_both_ranks_hold_identical_weights(runs):
    rank0, rank1 = runs.two[0].weights, runs.two[1].weights
    assert set(rank0) == set(rank1) and rank0
    different = [k for k in rank0 if not torch.equal(rank0[k], rank1[k])]
    assert not different, f"{runs.script}: ranks differ in {different[:5]}"


def test_two_processes_see_the_data_of_one_process_with_twice_the_batch(runs):
    # per micro-batch, the pixel checksums of its samples: rank 0's then rank 1's rows make 1-process batch k
    rank0, rank1, one = (d.info["batch_checksums"] for d in (*runs.two, runs.one))
    assert len(rank0) == len(rank1) == len(one) == STEPS
    for k in range(STEPS):
        assert len(rank0[k]) == len(rank1[k]) == B
        assert rank0[k] + rank1[k] == one[k], f"step {k}: the processes' batches are not the 1-process batch"
    assert rank0[0] != rank1[0]  # each process has its own samples


def test_two_processes_match_one_process_with_twice_the_batch(runs):
    grads2, grads1 = runs.two[0].grads, runs.one.grads
    assert set(grads2) == set(grads1) and grads1
    worst_grad = max(((grads2[k] - grads1[k]).abs().max() / grads1[k].abs().max().clamp(min=1e-12)).item() for k in grads1)
    weights2, weights1 = runs.two[0].weights, runs.one.weights
    worst_weight = max((weights2[k].float() - weights1[k].float()).abs().max().item() for k in weights1)
    print(f"{runs.script}: first-step gradient max relative difference {worst_grad:.2e}, final weight max difference {worst_weight:.2e}")
    assert worst_grad < GRAD_RTOL
    assert worst_weight < WEIGHT_ATOL


def test_only_the_main_process_writes(runs):
    import re

    # every process makes sure output_dir exists (makedirs, exist_ok); rank 1 adds its RNG state to the main process's
    # temporary checkpoint folder, whose name the main process chose (.tmp-checkpoint-<step>-<random>)
    allowed = re.compile(r"os\.mkdir \.|write \.tmp-checkpoint-[24]-[0-9a-f]{12}/rng_state_1\.(safetensors|json)")
    rank1 = set(runs.two[1].info["writes"])
    assert all(allowed.fullmatch(w) for w in rank1), f"rank 1 wrote {sorted(w for w in rank1 if not allowed.fullmatch(w))}"
    # the recorder does see writes: the main process wrote the checkpoints, the lock and the final model
    rank0 = runs.two[0].info["writes"]
    assert f"os.rename checkpoint-{STEPS}" in rank0 and any(w.startswith("write .tmp-checkpoint-2-") for w in rank0)
    assert "write .hf-textimg-train.lock" in rank0 and "os.remove .hf-textimg-train.lock" in rank0
    assert sorted(p.name for p in runs.out_two.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert sorted(p.name for p in (runs.out_two / "checkpoint-4").glob("rng_state_*.json")) == ["rng_state_0.json", "rng_state_1.json"]


def test_only_the_main_process_pushes_to_the_hub(runs):
    if runs.script != "autoencoder":
        pytest.skip("the autoencoder run is the one with --push_to_hub")
    calls = runs.two[0].info["hub_calls"]
    commits = [c[2] for c in calls if c[0] == "create_commit"]
    assert commits == ["Training in progress, step 2", "Training in progress, step 4", "End of training"]
    assert all(c[1] == "tester/mp-autoencoder" for c in calls)
    assert runs.two[1].info["hub_calls"] == []


def test_contrastive_loss_sees_negatives_from_every_process(runs):
    if runs.script != "concept":
        pytest.skip("only the concept model has a contrastive loss")
    for dump in runs.two:
        # every gather (text and image features, each step) turns B local rows into 2B rows
        assert dump.info["gathered_rows"] == [[B, 2 * B]] * (2 * STEPS)
    assert runs.one.info["gathered_rows"] == []  # one process: nothing to gather
    # and the gradients equal those of one process over the whole 2B batch (test above), which a loss over
    # local negatives only would not give


def test_ema_stays_in_sync(runs):
    if runs.script != "diffusion":
        pytest.skip("only the diffusion script keeps an EMA")
    rank0, rank1, one = runs.two[0].weights, runs.two[1].weights, runs.one.weights
    ema_keys = [k for k in rank0 if k.startswith("ema_")]
    assert {k.split(".")[0] for k in ema_keys} == {"ema_unet", "ema_text_encoder"}
    assert all(torch.equal(rank0[k], rank1[k]) for k in ema_keys)
    assert max((rank0[k].float() - one[k].float()).abs().max().item() for k in ema_keys) < WEIGHT_ATOL
    # the EMA is not simply the raw weights
    raw = {k.split(".", 1)[1]: v for k, v in rank0.items() if k.startswith("unet.")}
    assert any(not torch.equal(rank0[f"ema_unet.{name}"], value) for name, value in raw.items())


def test_a_failing_rank_stops_the_launch(tmp_path):
    """Rank 1 raises at its third micro-batch while rank 0 waits in the gradient all-reduce. Two things end it, long
    before the process group's 30-minute timeout: gloo on rank 0 sees the dead peer's socket close and raises
    ("Connection closed by peer"), and the launcher (torchrun) sees the failed worker, stops the others and exits
    non-zero, naming rank 1 as the root cause."""
    args = COMMON + AUTOENCODER + ["--train_batch_size", str(B), "--output_dir", str(tmp_path / "out")]
    finished = run(harness_command("autoencoder", tmp_path / "dump", args, 2), 120, MP_FAIL_RANK=1, MP_FAIL_STEP=3)
    print(f"failing launch ended after {finished.seconds:.1f} s with exit code {finished.returncode}")
    assert finished.returncode != 0
    assert "injected failure on rank 1 at micro-batch 3" in finished.output  # the real error, not only a timeout
    assert "ChildFailedError" in finished.output
    assert not (tmp_path / "dump" / "rank0" / "info.json").exists()  # rank 0 did not carry on alone
    assert finished.seconds < 90


def test_a_time_budget_stops_every_process_at_the_same_step(tmp_path):
    """--max_train_minutes: each process reads its own clock, and here rank 1 starts its loop 3 s after rank 0 (as a
    slow data load would make it). All must still stop at the same step, or the one that carries on waits forever in
    the next all-reduce."""
    # later flags override COMMON's
    args = COMMON + AUTOENCODER + ["--train_batch_size", str(B), "--output_dir", str(tmp_path / "out"), "--max_train_steps", "100000",
                                   "--max_train_minutes", "0.1", "--checkpointing_steps", "100000", "--validation_steps", "100000"]
    finished = run(harness_command("autoencoder", tmp_path / "dump", args, 2), 120, MP_LATE_START=3)
    assert finished.returncode == 0, finished.output[-4000:]
    rank0, rank1 = load_rank(tmp_path / "dump", 0), load_rank(tmp_path / "dump", 1)
    assert 0 < rank0.info["global_step"] == rank1.info["global_step"] < 100000
    assert all(torch.equal(rank0.weights[k], rank1.weights[k]) for k in rank0.weights)

"""`--streaming` (hf_textimg.data.streaming): training reads the split while it runs, decoded in DataLoader workers.

Checked here: a streamed set trains and the loss falls; processes split the shards without overlap or gaps (by row
ids, and in a real 2-process `accelerate launch`); a run resumed mid-epoch from a checkpoint ends bit-identical to
the uninterrupted run; a corrupt image is skipped and counted; a set with no streaming mode gets a ValueError; the
automatic in-memory / streaming choice follows the decoded size.
"""

import json
import logging
import shutil

import datasets
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from hf_textimg.data.emoji_arguments import EmojiDataArguments
from hf_textimg.data.loading import ImageTextCollator
from hf_textimg.data.streaming import (
    build_streaming_dataloader,
    choose_streaming,
    count_rows,
    load_streaming_dataset,
)
from hf_textimg.shapes import ShapesDataArguments
from hf_textimg.shapes.dataset import shapes_iterable_dataset
from hf_textimg.training import TrainConfig, load_split, parse_args

AUTOENCODER = ["--code_dim", "32", "--encoder_block_out_channels", "8", "16", "16", "--decoder_block_out_channels", "16", "16", "8",
               "--norm_num_groups", "4", "--num_shapes_eval", "16", "--max_eval_samples", "16", "--train_batch_size", "8",
               "--lr_scheduler", "constant", "--lr_warmup_steps", "0", "--learning_rate", "2e-3"]


@pytest.fixture
def fresh_accelerator_state():
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def parquet_folder(root, n=40, shards=4, corrupt=()):
    """`shards` parquet files of n captioned 40 px PNGs in all; rows in `corrupt` hold bytes that are no image."""
    features = datasets.Features({"image": datasets.Image(), "text": datasets.Value("string"), "id": datasets.Value("int64")})
    rng = np.random.default_rng(0)
    images = []
    for i in range(n):
        if i in corrupt:
            images.append({"bytes": b"not an image", "path": None})
        else:
            images.append(Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)))
    data = datasets.Dataset.from_dict({"image": images, "text": [f"picture {i}" for i in range(n)], "id": list(range(n))}, features=features)
    root.mkdir(parents=True, exist_ok=True)
    for s in range(shards):
        data.shard(shards, s, contiguous=True).to_parquet(str(root / f"train-{s:05d}-of-{shards:05d}.parquet"))
    data.select(range(4)).to_parquet(str(root / "validation-00000-of-00001.parquet"))  # (row 0 is never corrupt in these tests)
    return root


def epoch_ids(data, rank=0, world_size=1, batch_size=4, num_workers=0):
    """The row ids one process sees in its first epoch."""
    loader = build_streaming_dataloader(data, 32, batch_size, ImageTextCollator(), num_workers=num_workers, shuffle_buffer_size=8,
                                        rank=rank, world_size=world_size, id_column="id")
    ids = []
    for batch in loader:
        if loader.epoch > 0:
            break
        ids += batch["id"]
    return ids, loader


# ---- sharding ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("num_shards", [4, 3])  # 4: whole shards per process; 3: every other row (datasets' "examples")
def test_two_processes_split_the_rows_without_overlap_or_gaps(num_shards):
    data = shapes_iterable_dataset(48, 32, num_shards=num_shards)
    everything = {f"{s}-{r}" for s, n in enumerate([48 // num_shards] * num_shards) for r in range(n)}
    rank0, _ = epoch_ids(data, 0, 2)
    rank1, _ = epoch_ids(data, 1, 2)
    assert not set(rank0) & set(rank1)
    assert len(rank0) == len(set(rank0)) and len(rank1) == len(set(rank1))  # nothing twice within a process
    assert set(rank0) | set(rank1) == everything  # batch 4 divides each process's 24 rows: nothing dropped
    assert epoch_ids(data, 0, 2)[0] == rank0  # deterministic by seed


def test_workers_share_a_process_part_without_overlap(tmp_path):
    ids, _ = epoch_ids(load_streaming_dataset(dataset_name=str(parquet_folder(tmp_path / "pq"))), batch_size=5, num_workers=2)
    assert sorted(ids) == list(range(40))


@pytest.mark.multiprocess
def test_a_real_two_process_launch_reads_disjoint_data(tmp_path):
    """`accelerate launch --num_processes 2` (gloo on CPU) of the autoencoder on streamed parquet shards of random
    images: both processes finish with identical weights (gradients were averaged) and saw no common sample (pixel
    checksums, unique per image here)."""
    from mp_launch import harness_command, load_rank, run

    args = ["--dataset_name", str(parquet_folder(tmp_path / "pq", n=64)), *AUTOENCODER, "--max_train_steps", "4", "--checkpointing_steps", "4",
            "--validation_steps", "4", "--streaming", "--shuffle_buffer_size", "16", "--output_dir", str(tmp_path / "out")]
    finished = run(harness_command("autoencoder", tmp_path / "dump", args, 2), 120)
    assert finished.returncode == 0, finished.output[-3000:]
    rank0, rank1 = load_rank(tmp_path / "dump", 0), load_rank(tmp_path / "dump", 1)
    assert all(torch.equal(rank0.weights[k], rank1.weights[k]) for k in rank0.weights)
    sums0, sums1 = ({round(x, 3) for b in r.info["batch_checksums"] for x in b} for r in (rank0, rank1))
    assert len(sums0) == 32 and len(sums1) == 32 and not sums0 & sums1  # 4 steps x 8 rows each, all different
    assert (tmp_path / "out" / "checkpoint-4" / "data_state_1.json").is_file()  # each process's own position


# ---- training and resuming -----------------------------------------------------------------------------------------
def test_a_streamed_set_trains_and_the_loss_falls(tmp_path, fresh_accelerator_state):
    from training.train_diffusion import main

    result = main([
        "--dataset_name", "shapes", "--num_shapes_train", "128", "--num_shapes_eval", "16", "--streaming", "--dataloader_num_workers", "2",
        "--train_batch_size", "16", "--max_length", "16", "--unet_block_out_channels", "16", "32", "--unet_attention_head_dim", "8",
        "--unet_norm_num_groups", "8", "--learning_rate", "2e-3", "--lr_scheduler", "constant", "--lr_warmup_steps", "0",
        "--eval_prompts_per_category", "0", "--eval_num_inference_steps", "2", "--validation_images_per_prompt", "1",
        "--train_text_encoder", "--text_hidden_size", "32", "--text_num_layers", "1", "--text_num_heads", "2", "--projection_dim", "32",
        "--max_train_steps", "24", "--checkpointing_steps", "24", "--validation_steps", "24", "--output_dir", str(tmp_path / "out"),
    ])
    losses = [loss for _, loss in result["loss_history"]]
    assert result["global_step"] == 24  # 128 rows / 16 per batch: three epochs of the stream
    assert np.mean(losses[-6:]) < 0.7 * np.mean(losses[:3])
    state = json.loads((tmp_path / "out" / "checkpoint-24" / "trainer_state.json").read_text())
    assert state["config"]["streaming"] is True and state["epoch"] >= 2


def test_resume_mid_epoch_matches_the_uninterrupted_run(tmp_path, fresh_accelerator_state):
    """Parquet shards, 2 workers, a shuffle buffer, a corrupt row: 40 rows / 8 per batch, so the checkpoint at step 3
    is mid-epoch and the run crosses into the next epoch after it."""
    from training.train_autoencoder import main

    data = parquet_folder(tmp_path / "pq", corrupt={5})
    args = ["--dataset_name", str(data), *AUTOENCODER, "--streaming", "--dataloader_num_workers", "2",
            "--shuffle_buffer_size", "6", "--max_train_steps", "7", "--checkpointing_steps", "3", "--validation_steps", "7"]
    full = main(args + ["--output_dir", str(tmp_path / "full")])
    (tmp_path / "resumed").mkdir()
    shutil.copytree(tmp_path / "full" / "checkpoint-3", tmp_path / "resumed" / "checkpoint-3")
    resumed = main(args + ["--output_dir", str(tmp_path / "resumed"), "--resume_from_checkpoint", "latest"])
    assert resumed["loss_history"] == full["loss_history"][3:]
    weights = [load_file(tmp_path / name / "diffusion_pytorch_model.safetensors") for name in ("full", "resumed")]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


# ---- bad data and bad requests ---------------------------------------------------------------------------------------
def test_a_corrupt_image_is_skipped_and_counted(tmp_path, caplog):
    data = load_streaming_dataset(dataset_name=str(parquet_folder(tmp_path / "pq", n=12, shards=2, corrupt={3, 8})))
    with caplog.at_level(logging.WARNING):
        ids, loader = epoch_ids(data, batch_size=2)
    assert sorted(ids) == [i for i in range(12) if i not in (3, 8)]
    assert loader.num_skipped == 2 and loader.state_dict()["num_skipped"] == 2
    assert "could not be decoded" in caplog.text


def test_streaming_a_set_without_a_streaming_mode_is_a_value_error(tmp_path):
    cfg = parse_args(TrainConfig, ["--dataset_name", "emoji", "--streaming", "--output_dir", str(tmp_path)], ShapesDataArguments, EmojiDataArguments)
    with pytest.raises(ValueError, match=r"--streaming: the built-in data set 'emoji' has no streaming mode"):
        load_split(cfg, "train")


def test_the_automatic_choice_follows_the_decoded_size(tmp_path):
    assert choose_streaming(None, 50_000, 32)[0] is False  # the Shapes default: 150 MB
    assert choose_streaming(None, 1_000_000, 128)[0] is True  # 49 GB
    assert choose_streaming(None, None, 32)[0] is False  # unknown size: in memory, as before
    assert choose_streaming(True, 10, 32) == (True, "--streaming true")
    assert count_rows(str(parquet_folder(tmp_path / "pq", n=10)), None) == 10
    cfg = parse_args(TrainConfig, ["--dataset_name", "shapes", "--num_shapes_train", "2000000", "--resolution", "64", "--output_dir",
                                   str(tmp_path / "out")], ShapesDataArguments)
    assert isinstance(load_split(cfg, "train"), datasets.IterableDataset) and cfg.streaming is True  # 24 GiB: streamed

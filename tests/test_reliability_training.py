"""Training never loses or mixes up work and never saves garbage (issue 21; docs/reliability.md).

- settings that cannot give finite numbers are refused before any work (table);
- one run per output folder: a live owner is refused, a dead one's lock is taken over with a warning, another
  host's lock is refused with the command that removes it (table);
- checkpoints carry a manifest; a damaged one is skipped by `latest` with a warning naming the file, and is a
  ValueError when named explicitly (table);
- a NaN/inf loss, gradient or weight stops the run (after --max_skipped_nonfinite_steps skips), keeps the last good
  checkpoint and the model already in the folder (table);
- the scripts print their ValueErrors as one line and exit 2 (1 for a diverged run);
- data problems name the file, line or row, and column (table).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import time

import datasets
import psutil
import pytest
import torch
from mp_launch import REPO, subprocess_env
from test_bad_input import AUTOENCODER, image_folder, toy_dataset

from hf_textimg.data.loading import load_image_text_dataset
from hf_textimg.training import checkpointing
from hf_textimg.training.checkpointing import list_checkpoints, resolve_resume_path
from hf_textimg.training.entry import run_script
from hf_textimg.training.run_lock import LOCK_NAME
from hf_textimg.training.safety import TrainingDivergedError
from training import train_autoencoder

RUN = AUTOENCODER + ["--lr_scheduler", "constant", "--lr_warmup_steps", "0"]


def train(out, *extra):
    return train_autoencoder.main(RUN + ["--output_dir", str(out), *extra])


# ---- settings refused up front ---------------------------------------------------------------------------------------
CONFIG_CASES = [
    (["--learning_rate", "nan"], r"--learning_rate must be a finite number, got nan"),
    (["--learning_rate", "inf"], r"--learning_rate must be a finite number, got inf"),
    (["--adam_beta1", "1.0"], r"--adam_beta1 must be in \[0, 1\)"),
    (["--adam_beta2", "-0.1"], r"--adam_beta2 must be in \[0, 1\)"),
    (["--adam_epsilon", "0"], r"--adam_epsilon must be > 0"),
    (["--adam_weight_decay", "-1"], r"--adam_weight_decay must be >= 0"),
    (["--max_grad_norm", "nan"], r"--max_grad_norm must be a finite number"),
    (["--max_train_minutes", "0"], r"--max_train_minutes must be > 0 \(or unset for no time budget\), got 0.0"),
    (["--max_train_minutes", "-5"], r"--max_train_minutes must be > 0"),
    (["--lr_scheduler", "cosine_annealing"], r"--lr_scheduler 'cosine_annealing' is not a diffusers schedule; use one of \['linear', 'cosine'"),
    (["--lr_warmup_steps", "-3"], r"--lr_warmup_steps must be >= 0, got -3"),
    (["--seed", "-1"], r"--seed must be >= 0, got -1"),
    (["--seed", str(2**32)], r"--seed must be below 2\*\*32"),
    (["--l1_weight", "nan"], r"--l1_weight must be a finite number"),  # a script's own flag
    (["--encoder_block_out_channels", "0", "16"], r"--encoder_block_out_channels must hold integers >= 1, got \[0, 16\]"),
    (["--dataloader_num_workers", "-1"], r"--dataloader_num_workers must be >= 0"),
    (["--max_skipped_nonfinite_steps", "-1"], r"--max_skipped_nonfinite_steps must be >= 0"),
    (["--output_dir", "{tmp}/a-file"], r"--output_dir '.*a-file' is a file; pass a folder"),
    (["--output_dir", "{tmp}/a-file/run"], r"--output_dir '.*a-file/run' cannot be created: '.*a-file' is a file"),
    # found beyond the list
    (["--output_dir", ""], r"--output_dir is empty; pass a path"),
    (["--max_length", "1"], r"--max_length must be >= 3 \(begin and end tokens plus at least one word\), got 1"),
    (["--tokenizer_name", "/no/such/tokenizer"], r"--tokenizer_name '/no/such/tokenizer' does not exist, and is not a Hub repo id"),
    (["--tokenizer_name", "{tmp}/a-file"], r"--tokenizer_name '.*a-file' is a file; pass the folder that save_pretrained wrote"),
]

DIFFUSION_CASES = [
    (["--eval_guidance_scale", "-2"], r"--eval_guidance_scale must be >= 0"),
    (["--eval_guidance_scale", "inf"], r"--eval_guidance_scale must be a finite number"),
    (["--num_train_timesteps", "10"], r"--eval_num_inference_steps 20 with --num_train_timesteps 10: .*repeats timestep"),
    (["--concept_model_path", "./outputs/no-such-concept"], r"--concept_model_path './outputs/no-such-concept' does not exist"),
]


@pytest.mark.parametrize("extra, message", DIFFUSION_CASES, ids=[" ".join(c[0])[:40] for c in DIFFUSION_CASES])
def test_evaluation_settings_are_refused_before_training(extra, message, tmp_path):
    from training import train_diffusion

    with pytest.raises(ValueError, match=message):
        train_diffusion.main(["--train_text_encoder", "--output_dir", str(tmp_path / "run"), *extra])


@pytest.mark.parametrize("extra, message", CONFIG_CASES, ids=[" ".join(c[0])[:40] for c in CONFIG_CASES])
def test_settings_that_cannot_work_are_refused_up_front(extra, message, tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("x")
    monkeypatch.setattr(train_autoencoder, "load_split", lambda *a, **k: pytest.fail("data was loaded"))
    with pytest.raises(ValueError, match=message):
        train(tmp_path / "run", *[a.format(tmp=tmp_path) for a in extra])


# ---- one run per output folder ---------------------------------------------------------------------------------------
@pytest.fixture
def sleeper():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc
    proc.kill()
    proc.wait()


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def lock_of(pid, host=None, start="real") -> dict:
    process_start = psutil.Process(pid).create_time() if start == "real" else start
    return {"pid": pid, "host": host or socket.gethostname(), "process_start": process_start, "started": "2026-01-01T00:00:00",
            "command": "train_autoencoder.py --output_dir run"}


LOCK_CASES = [
    # (case, lock content given the sleeper's pid, error pattern or None, warning pattern or None)
    ("a live run here", lambda live: lock_of(live), r"is in use by another training run \(pid {live} on host", None),
    ("a run on another machine", lambda live: lock_of(live, host="gpu-node-7"),
     r"locked by a training run on another machine \(pid {live} on host 'gpu-node-7'.*`rm .*\.hf-textimg-train\.lock`", None),
    ("a dead run", lambda live: lock_of(live) | {"pid": dead_pid()}, None,
     r"Taking over the lock of .*: its run \(pid \d+ .*\) is no longer running"),
    ("a reused pid", lambda live: lock_of(live, start=1.0), None, r"Taking over the lock .*pid {live} "),
    ("an unreadable lock", lambda live: "{not json", None, r"Removing the unreadable lock file"),
]


@pytest.mark.parametrize("case, content, error, warning", LOCK_CASES, ids=[c[0] for c in LOCK_CASES])
def test_output_folder_lock(case, content, error, warning, sleeper, tmp_path, caplog):
    out = tmp_path / "run"
    out.mkdir()
    lock = out / LOCK_NAME
    written = content(sleeper.pid)
    lock.write_text(written if isinstance(written, str) else json.dumps(written))
    os.utime(lock, (1, 1))  # written long ago
    if error is not None:
        before = lock.read_text()
        with pytest.raises(ValueError, match=error.format(live=sleeper.pid)):
            train(out)
        assert lock.read_text() == before and sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # nothing written
        return
    with caplog.at_level(logging.WARNING, logger="hf_textimg.training.run_lock"):
        assert train(out)["global_step"] == 1
    assert re.search(warning.format(live=sleeper.pid), caplog.text), caplog.text
    assert not lock.exists()  # released when the run ended


def test_a_second_run_started_while_the_first_trains_is_refused(tmp_path):
    out = tmp_path / "run"
    first = subprocess.Popen(
        [sys.executable, "training/train_autoencoder.py", *RUN, "--max_train_steps", "400", "--output_dir", str(out)],
        cwd=REPO, env=subprocess_env(PYTHONPATH=str(REPO)), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        while not (out / LOCK_NAME).exists():
            assert first.poll() is None, first.stdout.read()[-2000:]
            time.sleep(0.05)
        with pytest.raises(ValueError, match=rf"is in use by another training run \(pid {first.pid} on host"):
            train(out)
    finally:
        first.kill()
        first.communicate()


def test_two_saves_never_share_a_temporary_folder(tmp_path, monkeypatch):
    from accelerate import Accelerator

    folders = []
    real_save_tree = checkpointing.save_tree
    monkeypatch.setattr(checkpointing, "save_tree", lambda obj, folder, name: folders.append(folder.name) or real_save_tree(obj, folder, name))
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    for _ in range(2):
        checkpointing.save_checkpoint(Accelerator(cpu=True), str(tmp_path), 5, {"model": model}, optimizer, scheduler, {"global_step": 5})
    temporary = sorted(set(folders))
    assert len(temporary) == 2 and all(re.fullmatch(r"\.tmp-checkpoint-5-[0-9a-f]{12}", name) for name in temporary)
    assert json.loads((tmp_path / "checkpoint-5" / "manifest.json").read_text())["files"].keys() >= {"model.safetensors", "trainer_state.json"}


# ---- damaged checkpoints -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory):
    out = tmp_path_factory.mktemp("checkpoints") / "run"
    train(out, "--max_train_steps", "2", "--checkpointing_steps", "1")
    assert [p.name for p in list_checkpoints(out)] == ["checkpoint-1", "checkpoint-2"]
    return out


def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


DAMAGE_CASES = [
    # (case, damage to checkpoint-2, what the messages say)
    ("truncated weights", lambda c: truncate(c / "model.safetensors"), r"checkpoint-2/model.safetensors has \d+ bytes, the manifest says \d+"),
    ("corrupted optimizer", lambda c: flip_a_byte(c / "optimizer.safetensors"), r"checkpoint-2/optimizer.safetensors does not match its SHA-256"),
    ("missing file", lambda c: (c / "scheduler.json").unlink(), r"checkpoint-2/scheduler.json is missing"),
    ("damaged manifest", lambda c: truncate(c / "manifest.json"), r"checkpoint-2/manifest.json is unreadable"),
    ("old, no manifest, truncated", lambda c: ((c / "manifest.json").unlink(), truncate(c / "model.safetensors")),
     r"checkpoint-2/model.safetensors: .*truncated or corrupt"),
]


@pytest.mark.parametrize("case, damage, message", DAMAGE_CASES, ids=[c[0] for c in DAMAGE_CASES])
def test_damaged_checkpoints_are_named_and_latest_falls_back(case, damage, message, two_checkpoints, tmp_path, caplog):
    out = tmp_path / "run"
    shutil.copytree(two_checkpoints, out)
    damage(out / "checkpoint-2")
    with caplog.at_level(logging.WARNING, logger="hf_textimg.training.checkpointing"):
        assert resolve_resume_path("latest", str(out)) == out / "checkpoint-1"
    assert re.search(r"skipped 1 damaged checkpoint\(s\) \(.*" + message, caplog.text), caplog.text
    with pytest.raises(ValueError, match=r"--resume_from_checkpoint '.*checkpoint-2' is damaged: .*" + message + r".*Intact checkpoints: \['checkpoint-1'\]"):
        resolve_resume_path(str(out / "checkpoint-2"), str(out))


def test_every_checkpoint_damaged_is_an_error_and_old_intact_ones_load_with_a_warning(two_checkpoints, tmp_path, caplog):
    out = tmp_path / "run"
    shutil.copytree(two_checkpoints, out)
    (out / "checkpoint-2" / "manifest.json").unlink()  # written before manifests existed
    with caplog.at_level(logging.WARNING, logger="hf_textimg.training.checkpointing"):
        assert resolve_resume_path("latest", str(out)) == out / "checkpoint-2"
    assert "checkpoint-2 has no manifest (written by an older version); its files load, so it is used" in caplog.text
    for checkpoint in list_checkpoints(out):
        truncate(checkpoint / "model.safetensors")
    with pytest.raises(ValueError, match=r"every checkpoint in .* is damaged \(.*checkpoint-2/model.safetensors.*checkpoint-1/model.safetensors"):
        resolve_resume_path("latest", str(out))


def test_resume_latest_skips_a_damaged_checkpoint_and_a_mismatched_one_is_named(two_checkpoints, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(two_checkpoints, out)
    truncate(out / "checkpoint-2" / "model.safetensors")
    result = train(out, "--max_train_steps", "3", "--checkpointing_steps", "1", "--resume_from_checkpoint", "latest")
    assert result["global_step"] == 3 and result["loss_history"][0][0] == 2  # resumed after step 1
    with pytest.raises(ValueError, match=r"checkpoint-3/model.safetensors does not fit the model of this run \(.*size mismatch"):
        train(out, "--max_train_steps", "4", "--code_dim", "8", "--resume_from_checkpoint", "latest")


# ---- non-finite loss, gradients and weights ------------------------------------------------------------------------------
class InfiniteGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("inf")


def poisoned_loss(monkeypatch, nan_at=(), inf_grad_at=()):
    """train_autoencoder's loss, NaN (or with an infinite gradient) at the given micro-batches (1-based)."""
    real, calls = train_autoencoder.reconstruction_loss, []

    def loss(sample, target, l1_weight):
        calls.append(1)
        value = real(sample, target, l1_weight)
        if len(calls) in nan_at:
            return value * float("nan")
        return InfiniteGradient.apply(value) if len(calls) in inf_grad_at else value

    monkeypatch.setattr(train_autoencoder, "reconstruction_loss", loss)


NONFINITE_CASES = [
    # (case, poison, extra flags, None = finishes, else the error pattern)
    ("nan loss", dict(nan_at={3}), [], r"Training stopped at step 3: the loss is nan \(0 such steps skipped before.*--resume_from_checkpoint .*checkpoint-2"),
    ("inf gradient", dict(inf_grad_at={3}), [], r"Training stopped at step 3: the gradient norm is (inf|nan)"),
    ("inf gradient, no clipping", dict(inf_grad_at={3}), ["--max_grad_norm", "0"], r"Training stopped at step 3: the gradient norm is (inf|nan)"),
    ("nan at the first step", dict(nan_at={1}), [], r"Training stopped at step 1: the loss is nan.*a new run \(no checkpoint was saved before it\)"),
    ("one skip allowed", dict(nan_at={3}), ["--max_skipped_nonfinite_steps", "1"], None),
    ("two nan, one skip allowed", dict(nan_at={3, 4}), ["--max_skipped_nonfinite_steps", "1"], r"Training stopped at step 3: the loss is nan \(1 such steps skipped before"),
]


@pytest.fixture(scope="module")
def finished_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("finished") / "run"
    train(out, "--max_train_steps", "2")
    return out


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("case, poison, extra, message", NONFINITE_CASES, ids=[c[0] for c in NONFINITE_CASES])
def test_non_finite_training_stops_and_keeps_the_good_model(case, poison, extra, message, finished_model, tmp_path, monkeypatch, caplog):
    out = tmp_path / "run"
    shutil.copytree(finished_model, out)  # a good model from an earlier run is in the folder
    weights = out / "diffusion_pytorch_model.safetensors"
    before = digest(weights)
    poisoned_loss(monkeypatch, **poison)
    args = ["--max_train_steps", "4", "--checkpointing_steps", "2", *extra]
    if message is not None:
        with pytest.raises(TrainingDivergedError, match=message):
            train(out, *args)
        assert digest(weights) == before  # the finished model was not replaced
        assert not (out / LOCK_NAME).exists() or json.loads((out / LOCK_NAME).read_text())["pid"] == os.getpid()
        return
    with caplog.at_level(logging.WARNING, logger="hf_textimg.training.loop"):
        result = train(out, *args)
    assert "Step 3 skipped: the loss is nan (1 of --max_skipped_nonfinite_steps 1)" in caplog.text
    assert [step for step, _ in result["loss_history"]] == [1, 2, 3, 4]  # a skipped step is not counted
    assert digest(weights) != before


def test_non_finite_weights_are_never_checkpointed(tmp_path):
    from accelerate import Accelerator

    from hf_textimg.training.config import TrainConfig
    from hf_textimg.training.loop import train_loop

    cfg = TrainConfig(output_dir=str(tmp_path), max_train_steps=3, checkpointing_steps=1, lr_scheduler="constant")
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    accelerator = Accelerator(cpu=True)
    data = torch.utils.data.DataLoader(torch.randn(8, 2), batch_size=2)
    model, optimizer, data, scheduler = accelerator.prepare(model, optimizer, data, torch.optim.lr_scheduler.ConstantLR(optimizer, 1.0))

    def poison_after_step(state):
        if state.global_step == 2:
            with torch.no_grad():
                model.bias.fill_(float("inf"))  # e.g. an overflowing update

    with pytest.raises(TrainingDivergedError, match=r"Training stopped at step 2: the weights of \['model'\] hold NaN/inf.*checkpoint-1"):
        train_loop(accelerator, cfg, {"model": model}, optimizer, scheduler, data, lambda b: (model(b).square().mean(), {}),
                   after_optimizer_step=poison_after_step)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-1"]


# ---- the scripts: one line, exit code ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("error, code", [(ValueError("--flag must be >= 1, got 0."), 2), (OSError("no such model"), 2),
                                         (TrainingDivergedError("Training stopped at step 3: ..."), 1)])
def test_run_script_prints_one_line_and_exits(error, code, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["train_x.py"])

    def main(argv):
        raise error

    with pytest.raises(SystemExit) as exit_info:
        run_script(main, [])
    assert exit_info.value.code == code
    assert capsys.readouterr().err == f"train_x.py: error: {error}\n"
    with pytest.raises(KeyError):  # a bug keeps its traceback
        run_script(lambda argv: {}["missing"], [])


def test_a_training_script_run_from_the_shell_prints_its_value_error_as_one_line(tmp_path):
    finished = subprocess.run(
        [sys.executable, "training/train_autoencoder.py", "--learning_rate", "nan", "--output_dir", str(tmp_path / "run")],
        cwd=REPO, env=subprocess_env(PYTHONPATH=str(REPO)), capture_output=True, text=True, timeout=120,
    )
    assert finished.returncode == 2
    assert finished.stderr.strip() == "train_autoencoder.py: error: --learning_rate must be a finite number, got nan."


# ---- data problems name the row and column ------------------------------------------------------------------------------------
def imagefolder_with(root, rows):
    """image_folder's 3 good rows, then `rows` (JSON text lines) appended to metadata.jsonl."""
    image_folder(root, n=3)
    with open(root / "metadata.jsonl", "a") as f:
        f.write("".join(r + "\n" for r in rows))
    return root


METADATA_CASES = [
    ("caption is null", ['{"file_name": "0.png", "text": null}'], r"metadata.jsonl line 4 \(file_name '0.png'\): caption column 'text' is missing \(None\)"),
    ("caption missing", ['{"file_name": "1.png"}'], r"line 4 \(file_name '1.png'\): caption column 'text' is missing \(None\).*this row has \['file_name'\]"),
    ("caption is a number", ['{"file_name": "2.png", "text": 7}'], r"line 4 .*caption column 'text' is not text: int 7"),
    ("caption is an object", ['{"file_name": "2.png", "text": {"en": "a cat"}}'], r"line 4 .*caption column 'text' is not text: dict"),
    ("empty caption list", ['{"file_name": "2.png", "text": []}'], r"line 4 .*caption column 'text' is an empty list"),
    ("mixed str and list", ['{"file_name": "2.png", "text": ["a", "b"]}'], r"line 4 .*column 'text' is an array here but a string on line 1"),
    ("mixed types, other column", ['{"file_name": "2.png", "text": "x", "kind": 1}', '{"file_name": "1.png", "text": "y", "kind": "a"}'],
     r"line 5 .*column 'kind' is a string here but a number on line 4"),
    ("invalid JSON", ['{"file_name": "2.png", "text": "x"'], r"metadata.jsonl line 4 is not valid JSON"),
    ("not an object", ['["2.png", "x"]'], r"metadata.jsonl line 4 is a JSON list, not an object"),
]


@pytest.mark.parametrize("case, rows, message", METADATA_CASES, ids=[c[0] for c in METADATA_CASES])
def test_imagefolder_metadata_problems_name_the_line_and_column(case, rows, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        load_image_text_dataset(train_data_dir=imagefolder_with(tmp_path / "folder", rows))


def dataset_with_captions(captions, feature=None):
    features = datasets.Features({"img": datasets.Image(), "caption": feature or datasets.Value("string")})
    images = toy_dataset(len(captions))["img"]
    return datasets.DatasetDict({"train": datasets.Dataset.from_dict({"img": list(images), "caption": captions}, features=features)})


COLUMN_CASES = [
    ("None caption", dataset_with_captions(["a", "b", None]), r"Row 2 of the given data set split 'train': caption column 'caption' is missing \(None\)"),
    ("int captions", dataset_with_captions([1, 2], datasets.Value("int64")), r"Row 0 .*caption column 'caption' is not text: int 1"),
    ("empty list", dataset_with_captions([["a"], []], datasets.Sequence(datasets.Value("string"))), r"Row 1 .*is an empty list"),
    ("None in a list column", dataset_with_captions([["a"], None], datasets.Sequence(datasets.Value("string"))), r"Row 1 .*is missing \(None\)"),
]


COLUMN_CASES += [
    ("no such Hub data set", dict(dataset_name="no-such-org/no-such-set"),
     r"dataset_name='no-such-org/no-such-set' could not be loaded as shapes, emoji, a save_to_disk folder or a Hub data set \(\w+"),
]


@pytest.mark.parametrize("case, data, message", COLUMN_CASES, ids=[c[0] for c in COLUMN_CASES])
def test_caption_column_problems_name_the_row(case, data, message):
    kwargs = dict(dataset_name=data) if isinstance(data, datasets.DatasetDict) else data
    with pytest.raises(ValueError, match=message):
        load_image_text_dataset(image_column="img", caption_column="caption", **kwargs)


def test_an_imagefolder_without_images_is_named(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"train_data_dir='.*empty' could not be loaded as a folder of images \(EmptyDatasetError"):
        load_image_text_dataset(train_data_dir=tmp_path / "empty")


RESUME_CASES = [
    # (changed flags, error pattern or None, warning pattern or None)
    (["--train_batch_size", "4"], r"--resume_from_checkpoint .*checkpoint-2: --train_batch_size 4 \(checkpoint: 8\)\. The checkpoint's position", None),
    (["--seed", "3"], r"--seed 3 \(checkpoint: 0\)", None),
    (["--num_shapes_train", "72"], r"--num_shapes_train 72 \(checkpoint: 64\)", None),
    (["--learning_rate", "1e-4"], None, r"with --learning_rate 0.0001 \(checkpoint: 0.001\): ignored, the optimizer and learning-rate schedule are restored"),
    (["--max_train_steps", "3", "--validation_steps", "3"], None, None),  # what a resume is for
]


@pytest.mark.parametrize("extra, error, warning", RESUME_CASES, ids=[" ".join(c[0][:2]) for c in RESUME_CASES])
def test_resume_with_other_data_settings_is_refused(extra, error, warning, two_checkpoints, tmp_path, caplog):
    out = tmp_path / "run"
    shutil.copytree(two_checkpoints, out)
    args = ["--max_train_steps", "3", "--resume_from_checkpoint", "latest", *extra]
    if error is not None:
        with pytest.raises(ValueError, match=error):
            train(out, *args)
        return
    with caplog.at_level(logging.WARNING, logger="hf_textimg.training.checkpointing"):
        assert train(out, *args)["loss_history"][0][0] == 3
    assert (re.search(warning, caplog.text) is not None) if warning else "ignored" not in caplog.text


def test_a_final_save_that_fails_half_way_leaves_the_earlier_model_whole(finished_model, tmp_path, monkeypatch, caplog):
    from hf_textimg.autoencoder import ConceptAutoencoder

    out = tmp_path / "run"
    shutil.copytree(finished_model, out)
    before = {p.name: digest(p) for p in out.iterdir() if p.is_file() and p.name != "eval_results.json"}
    real_save = ConceptAutoencoder.save_pretrained

    def disk_full(self, folder, **kwargs):
        real_save(self, folder, **kwargs)  # config.json and the weights are written (to the temporary folder) ...
        raise OSError(28, "No space left on device")  # ... and then the disk is full

    monkeypatch.setattr(ConceptAutoencoder, "save_pretrained", disk_full)
    with caplog.at_level(logging.WARNING, logger="hf_textimg.training.loop"), pytest.raises(OSError, match="No space left"):
        train(out, "--max_train_steps", "2", "--seed", "1")
    assert "holds an earlier run's model or checkpoints (config.json)" in caplog.text
    assert {name: digest(out / name) for name in before} == before
    assert not list(out.glob(".tmp-*"))

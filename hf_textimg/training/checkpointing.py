"""Resumable training checkpoints written atomically, in safetensors + JSON only.

Why not `accelerator.save_state`: it pickles the optimizer, scheduler and RNG states
(`*.bin`, `*.pkl`), and this package promises that nothing it reads is unpickled. Here
every tensor goes to a `.safetensors` file and everything else to JSON.

Layout of ``output_dir/checkpoint-<step>/``:
    <name>.safetensors   model weights (one file per trained model, plus `ema` if used)
    optimizer.safetensors + optimizer.json, scheduler.json
    rng_state_<rank>.safetensors + rng_state_<rank>.json   (torch, numpy, python RNGs)
    trainer_state.json   step, epoch, batch position, config

A checkpoint is written into ``.tmp-checkpoint-<step>-<random>`` (unique per save, so two processes can never
share one) and renamed into place only when complete, so a crash mid-save never leaves a folder that ``latest``
would pick. The last file written before the rename is ``manifest.json``: every other file's size and SHA-256.

Verification (`verify_checkpoint`), whenever a checkpoint is chosen for a resume: each file of the manifest must
exist with its size and hash. ``latest`` takes the newest intact checkpoint and warns about each newer damaged one,
naming the file (a disk that filled up, a copy cut short, a file system that lost data in a power cut); an explicit
damaged checkpoint is a ValueError naming the file. A checkpoint written before manifests existed is accepted with
a warning after a load check: trainer_state.json and every JSON file parse, every safetensors header is readable
and its file as long as the header says.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import random
import re
import shutil
import uuid
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

logger = logging.getLogger(__name__)

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
MANIFEST = "manifest.json"


# ---- a JSON tree with tensors stored beside it -----------------------------------------
def _encode(obj, tensors: dict[str, torch.Tensor], path: str):
    if isinstance(obj, torch.Tensor):
        tensors[path] = obj.detach().cpu().contiguous()
        return {"__tensor__": path}
    if isinstance(obj, np.ndarray):
        tensors[path] = torch.from_numpy(np.ascontiguousarray(obj))
        return {"__ndarray__": path}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {"__dict__": {k: _encode(v, tensors, f"{path}.{k}") for k, v in obj.items()}}
        return {"__items__": [[k, _encode(v, tensors, f"{path}.{k}")] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, tensors, f"{path}.{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, tensors, f"{path}.{i}") for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    raise TypeError(f"Cannot store a {type(obj).__name__} in a checkpoint (at {path}).")


def _decode(obj, tensors: dict[str, torch.Tensor]):
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        return tensors[obj["__tensor__"]]
    if "__ndarray__" in obj:
        return tensors[obj["__ndarray__"]].numpy()
    if "__dict__" in obj:
        return {k: _decode(v, tensors) for k, v in obj["__dict__"].items()}
    if "__items__" in obj:
        return {k: _decode(v, tensors) for k, v in obj["__items__"]}
    if "__tuple__" in obj:
        return tuple(_decode(v, tensors) for v in obj["__tuple__"])
    raise ValueError(f"Unrecognised checkpoint entry {obj!r}.")


def save_tree(obj, folder: Path, name: str) -> None:
    """Store a nested state (dicts, lists, tuples, tensors, arrays, scalars) as name.json + name.safetensors."""
    tensors: dict[str, torch.Tensor] = {}
    tree = _encode(obj, tensors, name)
    # safetensors refuses tensors that share memory; clone keeps each entry independent.
    save_file({k: v.clone() for k, v in tensors.items()}, str(folder / f"{name}.safetensors"))
    (folder / f"{name}.json").write_text(json.dumps(tree))


def load_tree(folder: Path, name: str):
    tensors = load_file(str(folder / f"{name}.safetensors"))
    return _decode(json.loads((folder / f"{name}.json").read_text()), tensors)


# ---- RNG states --------------------------------------------------------------------------
def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---- checkpoints -------------------------------------------------------------------------
def list_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints in `output_dir`, oldest first (temporary folders are ignored)."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := CHECKPOINT_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: Path) -> None:
    """``manifest.json``: size and SHA-256 of every other file in `folder`; written last, so its presence says the rest is complete."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name != MANIFEST)
    entries = {p.name: {"size": p.stat().st_size, "sha256": _sha256(p)} for p in files}
    (folder / MANIFEST).write_text(json.dumps({"format": 1, "files": entries}, indent=1))


def _load_check(folder: Path) -> str | None:
    """For checkpoints without a manifest: the first file that does not load, as 'file: reason', or None."""
    from ..utils.safe_loading import check_safetensors_file

    for path in sorted(folder.iterdir()):
        try:
            if path.suffix == ".json":
                json.loads(path.read_text())
            elif path.suffix == ".safetensors":
                check_safetensors_file(str(path))
        except (OSError, ValueError) as error:
            return f"{path}: {str(error).splitlines()[0][:200]}"
    return None


def verify_checkpoint(folder: Path) -> str | None:
    """None if `folder` is an intact checkpoint, else what is wrong, naming the file (see the module docstring)."""
    manifest = folder / MANIFEST
    if not manifest.is_file():
        if not (folder / "trainer_state.json").is_file():
            return f"{folder / 'trainer_state.json'} is missing"
        return _load_check(folder)
    try:
        entries = json.loads(manifest.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        return f"{manifest} is unreadable ({error})"
    for name, expected in entries.items():
        path = folder / name
        if not path.is_file():
            return f"{path} is missing"
        if path.stat().st_size != expected["size"]:
            return f"{path} has {path.stat().st_size} bytes, the manifest says {expected['size']} (truncated or overwritten)"
        if _sha256(path) != expected["sha256"]:
            return f"{path} does not match its SHA-256 in the manifest (corrupted)"
    return None


_verified: dict[tuple, str | None] = {}  # a run resolves its resume path several times: hash and warn once


def _cached_verify(folder: Path) -> str | None:
    key = (str(folder.resolve()), tuple(sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir() if p.is_file())))
    if key not in _verified:
        problem = _verified[key] = verify_checkpoint(folder)
        if problem is None and not (folder / MANIFEST).is_file():
            logger.warning("%s has no manifest (written by an older version); its files load, so it is used.", folder)
    return _verified[key]


def resolve_resume_path(resume_from_checkpoint: str | None, output_dir: str) -> Path | None:
    """Map `--resume_from_checkpoint` to a verified folder: "latest" -> the newest intact checkpoint (a warning
    names each newer damaged one), or None (fresh start, with a warning) when there is none at all; an explicit
    path must be an intact checkpoint. Damage is a ValueError naming the file."""
    if not resume_from_checkpoint:
        return None
    if resume_from_checkpoint == "latest":
        checkpoints = list_checkpoints(output_dir)
        if not checkpoints:
            logger.warning("--resume_from_checkpoint latest: no checkpoint in %s yet, starting a new run.", output_dir)
            return None
        problems = []
        for checkpoint in reversed(checkpoints):
            problem = _cached_verify(checkpoint)
            if problem is None:
                if problems:
                    logger.warning("--resume_from_checkpoint latest: skipped %d damaged checkpoint(s) (%s); resuming from %s.",
                                   len(problems), "; ".join(problems), checkpoint.name)
                return checkpoint
            problems.append(problem)
        raise ValueError(
            f"--resume_from_checkpoint latest: every checkpoint in {output_dir} is damaged ({'; '.join(problems)}). "
            "Remove them to start a new run, or copy an intact checkpoint there."
        )
    path = Path(resume_from_checkpoint)
    if not (path / "trainer_state.json").is_file() and not (path / MANIFEST).is_file():
        raise ValueError(
            f"--resume_from_checkpoint {resume_from_checkpoint!r} is not a checkpoint folder (no trainer_state.json); "
            f"pass 'latest' or one of {[str(p) for p in list_checkpoints(output_dir)] or 'the checkpoint-<step> folders'}."
        )
    problem = _cached_verify(path)
    if problem is not None:
        intact = [p.name for p in list_checkpoints(output_dir) if p != path and _cached_verify(p) is None]
        raise ValueError(f"--resume_from_checkpoint {resume_from_checkpoint!r} is damaged: {problem}. Intact checkpoints: {intact or 'none'}.")
    return path


def save_checkpoint(accelerator, output_dir: str, step: int, models: dict, optimizer, lr_scheduler, trainer_state: dict, limit: int | None = None,
                    data_state: dict | None = None) -> Path:
    """Write ``checkpoint-<step>`` atomically. Must be called on every process (each
    writes its RNG state, and with `data_state` its position in a streamed training set); the main process writes
    the rest and renames."""
    output_dir = Path(output_dir)
    final = output_dir / f"checkpoint-{step}"
    name = [f".tmp-checkpoint-{step}-{uuid.uuid4().hex[:12]}"]  # unique: no two saves ever share a folder
    if accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        broadcast_object_list(name)  # every process writes its RNG state into the main process's folder
    tmp = output_dir / name[0]
    if accelerator.is_main_process:
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    save_tree(rng_state(), tmp, f"rng_state_{accelerator.process_index}")
    if data_state is not None:
        save_tree(data_state, tmp, f"data_state_{accelerator.process_index}")
    if accelerator.is_main_process:
        for name, model in models.items():
            state = accelerator.unwrap_model(model).state_dict()
            save_file({k: v.detach().cpu().contiguous().clone() for k, v in state.items()}, str(tmp / f"{name}.safetensors"))
        save_tree(optimizer.state_dict(), tmp, "optimizer")
        (tmp / "scheduler.json").write_text(json.dumps(lr_scheduler.state_dict()))
        (tmp / "trainer_state.json").write_text(json.dumps(trainer_state, indent=2, default=str))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_manifest(tmp)  # last: a folder with a manifest is complete
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)  # atomic on one file system
        for stale in output_dir.glob(".tmp-checkpoint-*"):  # saves cut short by a crash (the output_dir lock: no other run saves here)
            shutil.rmtree(stale, ignore_errors=True)
        if limit is not None:
            for old in list_checkpoints(output_dir)[:-limit]:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator, path: Path, models: dict, optimizer, lr_scheduler) -> dict:
    """Restore models, optimizer, scheduler and this process's RNG state; returns the trainer state.

    A checkpoint that does not fit this run (written with other model flags, --use_ema or --train_text_encoder)
    is a ValueError naming the file, not a state-dict traceback."""
    for name, model in models.items():
        file = path / f"{name}.safetensors"
        with _naming(file, "the model"):
            accelerator.unwrap_model(model).load_state_dict(load_file(str(file)))
    with _naming(path / "optimizer.safetensors", "the optimizer (the trained modules differ)"):
        optimizer.load_state_dict(load_tree(path, "optimizer"))
    lr_scheduler.load_state_dict(json.loads((path / "scheduler.json").read_text()))
    rng_file = path / f"rng_state_{accelerator.process_index}.json"
    if rng_file.is_file():
        set_rng_state(load_tree(path, f"rng_state_{accelerator.process_index}"))
    else:
        logger.warning("No RNG state for process %d in %s; random streams will differ from the original run.", accelerator.process_index, path)
    return json.loads((path / "trainer_state.json").read_text())


def load_data_state(path: Path, process_index: int) -> dict:
    """This process's position in a streamed training set (`StreamingDataLoader.state_dict()`), saved by `save_checkpoint`."""
    if not (path / f"data_state_{process_index}.json").is_file():
        raise ValueError(f"--resume_from_checkpoint {path} holds no streaming position for process {process_index} (written by a run "
                         "that kept its data in memory); resume with that run's --streaming setting, or start a new run.")
    return load_tree(path, f"data_state_{process_index}")


@contextlib.contextmanager
def _naming(file: Path, what: str):
    """Turn an error while loading `file` into a ValueError naming it and the likely cause."""
    try:
        yield
    except (RuntimeError, ValueError, KeyError, OSError) as error:
        lines = [line.strip() for line in str(error).strip().splitlines()] or [type(error).__name__]
        # torch's load_state_dict puts the useful part ("size mismatch for ...", "Missing key(s) ...") after a header line
        reason = next((line for line in lines if line.startswith(("size mismatch", "Missing key", "Unexpected key"))), lines[0])[:300]
        raise ValueError(
            f"{file} does not fit {what} of this run ({reason}). It was written by a run with other settings (model "
            f"sizes, --use_ema, --train_text_encoder: see the config in {file.parent / 'trainer_state.json'}); resume "
            "with that run's flags, or start a new run in another --output_dir."
        ) from error


# Flags that fix which samples each step sees: a checkpoint's position (epoch, batch) means nothing under other values.
DATA_ORDER_FLAGS = (
    "dataset_name", "train_data_dir", "dataset_config_name", "image_column", "caption_column", "resolution",
    "max_train_samples", "train_batch_size", "gradient_accumulation_steps", "seed", "streaming", "shuffle_buffer_size",
)
# Flags whose new values a resumed run ignores: the optimizer and its schedule come back from the checkpoint.
RESTORED_FLAGS = ("learning_rate", "text_encoder_lr", "lr_scheduler", "lr_warmup_steps", "adam_beta1", "adam_beta2", "adam_weight_decay", "adam_epsilon")


def check_resume_settings(path: Path, saved_config: dict | None, config: dict, num_processes: int) -> None:
    """A resumed run must see the data the checkpoint's run would have seen next: a changed data-order flag (or
    number of processes) is a ValueError naming it; a changed optimizer flag, which the restored optimizer state
    overrides, gets a warning saying so."""
    if not saved_config:
        return
    # a stream's position is per DataLoader worker, so their number is part of it (the in-memory order does not depend on it)
    streamed = ("dataloader_num_workers",) if config.get("streaming") else ()
    is_data = lambda k: k in DATA_ORDER_FLAGS or k in streamed or k.startswith(("shapes_", "num_shapes_"))  # noqa: E731
    changed = {k: (saved_config[k], v) for k, v in config.items() if k in saved_config and saved_config[k] != v}
    data = [f"--{k} {new!r} (checkpoint: {old!r})" for k, (old, new) in changed.items() if is_data(k)]
    saved_processes = len(list(path.glob("rng_state_*.json")))
    if saved_processes and saved_processes != num_processes:
        data.append(f"{num_processes} processes (checkpoint: {saved_processes})")
    if data:
        raise ValueError(
            f"--resume_from_checkpoint {path}: {', '.join(data)}. The checkpoint's position in the data only means something "
            "with its run's data order; resume with its settings (trainer_state.json holds them), or start a new run."
        )
    ignored = [f"--{k} {new!r} (checkpoint: {old!r})" for k, (old, new) in changed.items() if k in RESTORED_FLAGS]
    if ignored:
        logger.warning("Resuming from %s with %s: ignored, the optimizer and learning-rate schedule are restored from the "
                       "checkpoint. Start a new run to change them.", path, ", ".join(ignored))


@contextlib.contextmanager
def final_save(output_dir: str | os.PathLike):
    """Yield a temporary folder inside `output_dir` for the finished model's `save_pretrained`, then move each of its
    files and folders into `output_dir`. A crash or a full disk while saving leaves the model already there whole
    (the temporary folder is removed); only the moves themselves, renames on one file system, touch it."""
    output_dir = Path(output_dir)
    tmp = output_dir / f".tmp-final-{uuid.uuid4().hex[:12]}"
    tmp.mkdir(parents=True)
    try:
        yield tmp
        for entry in sorted(tmp.iterdir()):
            target = output_dir / entry.name
            if target.is_dir():  # a folder cannot be replaced by a rename: move the old one aside first
                old = output_dir / f".tmp-old-{entry.name}-{uuid.uuid4().hex[:12]}"
                os.replace(target, old)
                os.replace(entry, target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(entry, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

"""Resumable training checkpoints written atomically, in safetensors + JSON only.

Why not `accelerator.save_state`: it pickles the optimizer, scheduler and RNG states
(`*.bin`, `*.pkl`), and this package promises that nothing it reads is unpickled. Here
every tensor goes to a `.safetensors` file and everything else to JSON.

Layout of ``output_dir/checkpoint-<step>/``:
    <name>.safetensors   model weights (one file per trained model, plus `ema` if used)
    optimizer.safetensors + optimizer.json, scheduler.json
    rng_state_<rank>.safetensors + rng_state_<rank>.json   (torch, numpy, python RNGs)
    trainer_state.json   step, epoch, batch position, config

A checkpoint is written into ``.tmp-checkpoint-<step>`` and renamed into place only when
complete, so a crash mid-save never leaves a folder that ``latest`` would pick.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

logger = logging.getLogger(__name__)

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


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


def resolve_resume_path(resume_from_checkpoint: str | None, output_dir: str) -> Path | None:
    """Map `--resume_from_checkpoint` to a folder: "latest" -> newest complete checkpoint or
    None (fresh start, with a warning); an explicit path must exist."""
    if not resume_from_checkpoint:
        return None
    if resume_from_checkpoint == "latest":
        checkpoints = list_checkpoints(output_dir)
        if not checkpoints:
            logger.warning("--resume_from_checkpoint latest: no checkpoint in %s yet, starting a new run.", output_dir)
            return None
        return checkpoints[-1]
    path = Path(resume_from_checkpoint)
    if not (path / "trainer_state.json").is_file():
        raise ValueError(
            f"--resume_from_checkpoint {resume_from_checkpoint!r} is not a checkpoint folder (no trainer_state.json); "
            f"pass 'latest' or one of {[str(p) for p in list_checkpoints(output_dir)] or 'the checkpoint-<step> folders'}."
        )
    return path


def save_checkpoint(accelerator, output_dir: str, step: int, models: dict, optimizer, lr_scheduler, trainer_state: dict, limit: int | None = None) -> Path:
    """Write ``checkpoint-<step>`` atomically. Must be called on every process (each
    writes its RNG state); the main process writes the rest and renames."""
    output_dir = Path(output_dir)
    final = output_dir / f"checkpoint-{step}"
    tmp = output_dir / f".tmp-checkpoint-{step}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    save_tree(rng_state(), tmp, f"rng_state_{accelerator.process_index}")
    if accelerator.is_main_process:
        for name, model in models.items():
            state = accelerator.unwrap_model(model).state_dict()
            save_file({k: v.detach().cpu().contiguous().clone() for k, v in state.items()}, str(tmp / f"{name}.safetensors"))
        save_tree(optimizer.state_dict(), tmp, "optimizer")
        (tmp / "scheduler.json").write_text(json.dumps(lr_scheduler.state_dict()))
        (tmp / "trainer_state.json").write_text(json.dumps(trainer_state, indent=2, default=str))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)  # atomic on one file system
        for stale in output_dir.glob(".tmp-checkpoint-*"):  # saves cut short by a crash at other steps
            shutil.rmtree(stale, ignore_errors=True)
        if limit is not None:
            for old in list_checkpoints(output_dir)[:-limit]:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator, path: Path, models: dict, optimizer, lr_scheduler) -> dict:
    """Restore models, optimizer, scheduler and this process's RNG state; returns the trainer state."""
    for name, model in models.items():
        accelerator.unwrap_model(model).load_state_dict(load_file(str(path / f"{name}.safetensors")))
    optimizer.load_state_dict(load_tree(path, "optimizer"))
    lr_scheduler.load_state_dict(json.loads((path / "scheduler.json").read_text()))
    rng_file = path / f"rng_state_{accelerator.process_index}.json"
    if rng_file.is_file():
        set_rng_state(load_tree(path, f"rng_state_{accelerator.process_index}"))
    else:
        logger.warning("No RNG state for process %d in %s; random streams will differ from the original run.", accelerator.process_index, path)
    return json.loads((path / "trainer_state.json").read_text())

"""Helpers for tests that run training scripts in real processes: `tests/mp_harness.py` under `accelerate launch`
(or plain `python`), with a wall-clock limit, and reading back what the harness dumped."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]
HARNESS = REPO / "tests" / "mp_harness.py"
# Set by a launcher; a test process started under one must not hand them on.
_DIST_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "GROUP_RANK", "ROLE_RANK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def subprocess_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in _DIST_VARS}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1", ACCELERATE_USE_CPU="true", TOKENIZERS_PARALLELISM="false")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def harness_command(script: str, dump: Path, args: list[str], num_processes: int = 1) -> list[str]:
    """`accelerate launch --multi_gpu --num_processes N` (gloo on CPU) for N > 1, plain python for N == 1."""
    if num_processes == 1:
        return [sys.executable, str(HARNESS), script, str(dump), *args]
    launcher = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(num_processes),
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
    ]
    return [*launcher, str(HARNESS), script, str(dump), *args]


@dataclass
class Finished:
    returncode: int
    output: str
    seconds: float


def run(command: list[str], timeout: float, **env) -> Finished:
    """Run `command` in its own process group; on timeout kill the whole group and fail."""
    start = time.monotonic()
    proc = subprocess.Popen(command, cwd=REPO, env=subprocess_env(**env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        raise AssertionError(f"{' '.join(command[:6])} ... still running after {timeout} s (a hang); output tail:\n{output[-3000:]}")
    return Finished(proc.returncode, output, time.monotonic() - start)


@dataclass
class RankDump:
    info: dict
    weights: dict
    grads: dict


def load_rank(dump: Path, rank: int) -> RankDump:
    folder = Path(dump) / f"rank{rank}"
    grads = load_file(folder / "grads.safetensors") if (folder / "grads.safetensors").is_file() else {}
    return RankDump(json.loads((folder / "info.json").read_text()), load_file(folder / "weights.safetensors"), grads)


def save_tiny_concept_model(folder: Path) -> Path:
    """A tiny untrained ConceptModel + tokenizer, saved as train_concept.py saves them (for the decoder and
    diffusion scripts' --concept_model_path; a fixed tokenizer also keeps separate runs comparable)."""
    import torch

    from hf_textimg.concept import ConceptConfig, ConceptModel
    from hf_textimg.shapes import build_shapes_dataset
    from hf_textimg.tokenization import train_tokenizer

    captions = build_shapes_dataset(num_train=200, num_validation=1, num_heldout=1)["train"]["text"]
    tokenizer = train_tokenizer(captions, vocab_size=300, model_max_length=16)
    torch.manual_seed(0)
    ConceptModel(ConceptConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, max_position_embeddings=16),
        vision_config=dict(base_channels=8, num_stages=2, layers_per_stage=1, norm_num_groups=4),
        projection_dim=32,
    )).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder

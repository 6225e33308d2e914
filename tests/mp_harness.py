"""Run one training script's `main()` with test instruments; used by test_multiprocess.py and test_crash_resume.py.

    ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2 tests/mp_harness.py SCRIPT DUMP [ARGS...]
    python tests/mp_harness.py SCRIPT DUMP [ARGS...]

SCRIPT is concept, autoencoder, decoder or diffusion (`training/train_<SCRIPT>.py`); ARGS go to its `main`. Nothing
in the training code is changed; the instruments only watch, except where an environment variable asks:

    MP_FAIL_RANK, MP_FAIL_STEP   raise a RuntimeError on that rank at that micro-batch (1-based)
    MP_GLOBAL_NOISE=1            diffusion: draw noise and timesteps for the global batch and give each process its
                                 slice, so 2 processes x B draw the numbers 1 process x 2B draws
    MP_STEP_SLEEP                seconds to sleep per micro-batch (gives a test time to kill the run)
    MP_LATE_START                seconds rank 1 waits before entering train_loop (so the processes' clocks differ)
    MP_KILL_IN_SAVE=<step>       SIGKILL this process half-way through writing checkpoint <step>
    MP_FAKE_HUB=1                answer the Hub's create_repo / create_commit locally and record the calls

Per process it writes, under DUMP/rank<i>/ (never under --output_dir):
    weights.safetensors  every trained model (and EMA) after the last step, "<name>.<parameter>"
    grads.safetensors    the gradients the first optimizer step used (after averaging and clipping), "p<i>"
    info.json            world size, steps, per-micro-batch sample checksums (data order), contrastive gather sizes,
                         Hub calls, whether the process group outlived main(), and every file this process
                         created, renamed or removed under --output_dir
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

torch.set_num_threads(1)

# ---- file writes under output_dir, seen from Python's audit events and safetensors (which writes from Rust) ----
WRITES: list[str] = []
_watch: dict = {"root": None}


def _record(kind: str, path) -> None:
    root = _watch["root"]
    if root is None or not isinstance(path, (str, bytes, os.PathLike)):
        return
    path = os.path.abspath(os.fsdecode(path))
    if path == root or path.startswith(root + os.sep):
        WRITES.append(f"{kind} {os.path.relpath(path, root)}")


def _audit(event: str, args) -> None:
    if _watch["root"] is None:
        return
    if event == "open":
        path, mode, flags = args
        writing = any(c in mode for c in "wax+") if isinstance(mode, str) else bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
        if writing:
            _record("write", path)
    elif event in ("os.mkdir", "os.remove", "os.rmdir", "shutil.rmtree", "os.truncate"):
        _record(event, args[0])
    elif event in ("os.rename", "shutil.copyfile", "shutil.move", "os.link", "os.symlink"):
        _record(event, args[1])


sys.addaudithook(_audit)

import safetensors.torch  # noqa: E402  (patched before transformers / diffusers import it by name)

_save_file = safetensors.torch.save_file


def _recording_save_file(tensors, filename, *args, **kwargs):
    _record("write", filename)
    return _save_file(tensors, filename, *args, **kwargs)


safetensors.torch.save_file = _recording_save_file

import hf_textimg.concept.losses as losses  # noqa: E402
import hf_textimg.training as training_lib  # noqa: E402
import hf_textimg.training.checkpointing as checkpointing  # noqa: E402

INFO: dict = {"gathered_rows": [], "batch_checksums": [], "hub_calls": []}


# ---- contrastive loss: how many rows each gather returns ----------------------------------------------------------
class _RecordingGather:
    _original = losses._AllGatherWithGrad

    @classmethod
    def apply(cls, tensor):
        out = cls._original.apply(tensor)
        INFO["gathered_rows"].append([tensor.shape[0], out.shape[0]])
        return out


losses._AllGatherWithGrad = _RecordingGather


# ---- the first optimizer step's gradients ------------------------------------------------------------------------
def _grad_hook(optimizer, args, kwargs):
    if "grads" in INFO:
        return
    params = [p for group in optimizer.param_groups for p in group["params"]]
    INFO["grads"] = {f"p{i}": (p.grad if p.grad is not None else torch.zeros_like(p)).detach().clone() for i, p in enumerate(params)}


from torch.optim.optimizer import register_optimizer_step_pre_hook  # noqa: E402

register_optimizer_step_pre_hook(_grad_hook)


# ---- the Hub, faked at the network layer (so the real main-process gating in hf_textimg.hub is what runs) ------
if os.environ.get("MP_FAKE_HUB"):
    from types import SimpleNamespace

    import huggingface_hub

    def _create_repo(repo_id, **kwargs):
        INFO["hub_calls"].append(["create_repo", repo_id])
        return SimpleNamespace(repo_id=repo_id)

    def _create_commit(self, repo_id, operations, commit_message="", **kwargs):
        INFO["hub_calls"].append(["create_commit", repo_id, commit_message, len(operations)])
        return SimpleNamespace(commit_url=f"https://hub.invalid/{repo_id}/commit/{len(INFO['hub_calls'])}")

    huggingface_hub.create_repo = _create_repo
    huggingface_hub.HfApi.create_commit = _create_commit


# ---- a crash half-way through a checkpoint save ------------------------------------------------------------------
if os.environ.get("MP_KILL_IN_SAVE"):
    _save_tree, _kill_folder = checkpointing.save_tree, f".tmp-checkpoint-{os.environ['MP_KILL_IN_SAVE']}-"

    def _killing_save_tree(obj, folder, name):
        if name == "optimizer" and Path(folder).name.startswith(_kill_folder):  # .tmp-checkpoint-<step>-<random>
            os.kill(os.getpid(), signal.SIGKILL)  # model weights are written, the optimizer state is not
        return _save_tree(obj, folder, name)

    checkpointing.save_tree = _killing_save_tree


# ---- noise for the global batch (diffusion) ----------------------------------------------------------------------
class GlobalDraws:
    """Stands in for `torch` in train_diffusion: `randn_like`, `randint` and `rand` draw the whole global batch
    (all processes' rows) from a generator seeded by the call count, and return this process's rows."""

    def __init__(self, rank: int, world: int):
        self.rank, self.world, self.calls = rank, world, {}

    def __getattr__(self, name):
        return getattr(torch, name)

    def _slice(self, kind: str, draw, rows: int, device):
        self.calls[kind] = self.calls.get(kind, 0) + 1
        generator = torch.Generator().manual_seed(1000 * self.calls[kind] + len(kind))
        return draw(generator, rows * self.world)[self.rank * rows : (self.rank + 1) * rows].to(device)

    def randn_like(self, x):
        return self._slice("randn", lambda g, n: torch.randn((n, *x.shape[1:]), generator=g, dtype=x.dtype), x.shape[0], x.device)

    def randint(self, low, high, size, device=None):
        return self._slice("randint", lambda g, n: torch.randint(low, high, (n, *size[1:]), generator=g), size[0], device)

    def rand(self, size, device=None):
        size = (size,) if isinstance(size, int) else tuple(size)
        return self._slice("rand", lambda g, n: torch.rand((n, *size[1:]), generator=g), size[0], device)


# ---- the train_loop wrapper ----------------------------------------------------------------------------------------
_train_loop = training_lib.train_loop


def instrumented_train_loop(accelerator, cfg, models, optimizer, lr_scheduler, dataloader, compute_loss, **kwargs):
    rank, world = accelerator.process_index, accelerator.num_processes
    fail_rank, fail_step = int(os.environ.get("MP_FAIL_RANK", -1)), int(os.environ.get("MP_FAIL_STEP", -1))
    sleep = float(os.environ.get("MP_STEP_SLEEP", 0))
    if os.environ.get("MP_GLOBAL_NOISE") and "training.train_diffusion" in sys.modules:
        sys.modules["training.train_diffusion"].torch = GlobalDraws(rank, world)
    micro_batches = 0

    def loss_fn(batch):
        nonlocal micro_batches
        micro_batches += 1
        if rank == fail_rank and micro_batches == fail_step:
            raise RuntimeError(f"injected failure on rank {rank} at micro-batch {micro_batches}")
        if sleep:
            time.sleep(sleep)
        INFO["batch_checksums"].append(batch["pixel_values"].double().sum(dim=(1, 2, 3)).tolist())
        return compute_loss(batch)

    if rank == 1 and os.environ.get("MP_LATE_START"):
        time.sleep(float(os.environ["MP_LATE_START"]))
    state = _train_loop(accelerator, cfg, models, optimizer, lr_scheduler, dataloader, loss_fn, **kwargs)
    modules = {name: accelerator.unwrap_model(m) for name, m in models.items()}
    if kwargs.get("extra_checkpoint_models"):
        modules.update(kwargs["extra_checkpoint_models"]())
    weights = {f"{name}.{k}": v.detach().cpu().contiguous().clone() for name, m in modules.items() for k, v in m.state_dict().items()}
    INFO.update(rank=rank, world_size=world, global_step=state.global_step, loss_history=state.history)
    out = DUMP / f"rank{rank}"
    out.mkdir(parents=True, exist_ok=True)
    _save_file(weights, str(out / "weights.safetensors"))
    if "grads" in INFO:
        _save_file(INFO.pop("grads"), str(out / "grads.safetensors"))
    return state


training_lib.train_loop = instrumented_train_loop


def _output_dir(args: list[str]) -> str:
    return os.path.abspath(args[args.index("--output_dir") + 1])


if __name__ == "__main__":
    script, DUMP, script_args = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
    import importlib

    module = importlib.import_module(f"training.train_{script}")
    _watch["root"] = _output_dir(script_args)
    module.main(script_args)
    _watch["root"] = None
    INFO["process_group_alive_after_main"] = torch.distributed.is_initialized()  # end_training destroys it
    rank = INFO.get("rank", int(os.environ.get("RANK", 0)))
    INFO["writes"] = WRITES
    INFO["finished"] = True
    (DUMP / f"rank{rank}").mkdir(parents=True, exist_ok=True)
    (DUMP / f"rank{rank}" / "info.json").write_text(json.dumps(INFO))

"""What every benchmark shares: threads, the machine description, timing, the table and the JSON line,
and `TimedLoop`, a timed view of the training loop that every training script (and the baseline) runs.

Each benchmark prints the machine, thread count and library versions first, then a table, then one JSON
line (the last line of stdout) holding the same figures, so runs can be collected with `tail -n 1`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import inspect
import json
import logging
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence

import torch

# ---- set-up -------------------------------------------------------------------------------------


def available_cores() -> int:
    """Cores this process may run on (the affinity mask, not the machine's total)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def add_common_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: every core this process may use)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and counts, seconds: a smoke test of the script, not a measurement")
    return parser


def setup(args: argparse.Namespace) -> int:
    """Apply `--threads` (default: all available cores) and quiet the INFO logs of the training scripts
    (`build_accelerator`'s `logging.basicConfig` is a no-op once logging is configured). Returns the threads."""
    threads = args.threads or available_cores()
    torch.set_num_threads(threads)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return threads


def machine_info() -> dict:
    """CPU model, cores, torch threads, library versions and the 1-minute load average at the time of the call
    (a load near or above the core count means another process shared the cores: the figures are then low)."""
    import accelerate
    import diffusers
    import transformers

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    return {
        "cpu": cpu,
        "cores": available_cores(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "python": platform.python_version(),
        "load_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }


def print_machine(info: dict) -> None:
    print(
        f"machine: {info['cpu']} | cores {info['cores']} | torch threads {info['threads']} | torch {info['torch']} | "
        f"diffusers {info['diffusers']} | transformers {info['transformers']} | load {info['load_1min']}"
    )


# ---- output -------------------------------------------------------------------------------------


def format_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A plain-text table; floats get 3 significant decimals or thousands separators, None prints as '-'."""

    def cell(value) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}" if abs(value) < 0.01 else f"{value:.2f}"
        return str(value)

    cells = [[cell(v) for v in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    lines = ["  ".join(f"{h:>{w}}" if i else f"{h:<{w}}" for i, (h, w) in enumerate(zip(headers, widths)))]
    lines += ["  ".join(f"{c:>{w}}" if i else f"{c:<{w}}" for i, (c, w) in enumerate(zip(r, widths))) for r in cells]
    return "\n".join(lines)


def emit(record: dict) -> dict:
    """Print `record` as one JSON line (non-finite floats become null) and return it."""

    def clean(value):
        if isinstance(value, float):
            return round(value, 6) if value == value and abs(value) != float("inf") else None
        if isinstance(value, dict):
            return {str(k): clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    print(json.dumps(clean(record)))
    return record


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


# ---- timing -------------------------------------------------------------------------------------


def time_calls(fn: Callable[[], object], warmup: int, repeats: int) -> list[float]:
    """Seconds of each of `repeats` calls of fn(), after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


# ---- the training loop, timed -------------------------------------------------------------------


def fresh_accelerate() -> None:
    """Forget accelerate's process-wide state, so the next script's `Accelerator` may pick its own mixed
    precision (as the test suite does between runs in one process)."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)


@dataclasses.dataclass
class Evaluation:
    step: int
    train_minutes: float  # training clock at this evaluation (evaluation time excluded)
    eval_seconds: float  # how long the evaluation itself took (not on the training clock)
    metrics: dict


@dataclasses.dataclass
class TimedLoop:
    """Runs inside a training script's `main()` in place of `hf_textimg.training.train_loop` (which it calls),
    to time every optimizer step and to evaluate on a clock that counts training only.

    The training clock is the sum of the intervals between consecutive optimizer steps (data loading,
    forward, backward, clipping, optimizer, LR schedule and the script's after-step work such as the EMA
    update all included). Evaluation, `between_steps` work and checkpoints are off the clock: the loop is
    run without checkpoints, and the script's own `evaluate` is called here, every `eval_every_seconds` of
    training time and when the run stops, instead of every `--validation_steps`.

    Args:
        max_steps: stop after this many optimizer steps (default: the script's `--max_train_steps`).
        budget_seconds: stop once the training clock reaches this.
        eval_every_seconds: evaluate every this many seconds of training (None: never, not even at the end).
        between_steps: called as fn(state) after each step's time is taken, off the clock.
        before_loop: called as fn() when the script has built everything and the loop is about to start.
    """

    max_steps: int | None = None
    budget_seconds: float | None = None
    eval_every_seconds: float | None = None
    between_steps: Callable | None = None
    before_loop: Callable | None = None
    step_seconds: list[float] = dataclasses.field(default_factory=list)
    evaluations: list[Evaluation] = dataclasses.field(default_factory=list)
    models: dict = dataclasses.field(default_factory=dict)
    batch_size: int | None = None
    mixed_precision: str | None = None

    @property
    def train_seconds(self) -> float:
        return sum(self.step_seconds)

    @contextlib.contextmanager
    def patch(self, module):
        """Make `module.train_loop` (a training script's import of the shared loop) this timed loop."""
        from hf_textimg.training import loop as shared

        if getattr(module, "train_loop", None) is not shared.train_loop:
            raise RuntimeError(f"{module.__name__} does not call hf_textimg.training.train_loop by that name; TimedLoop cannot time it.")
        module.train_loop = self._train_loop
        try:
            yield self
        finally:
            module.train_loop = shared.train_loop

    def _train_loop(self, *args, **kwargs):
        from hf_textimg.training import loop as shared

        bound = inspect.signature(shared.train_loop).bind(*args, **kwargs)
        bound.apply_defaults()
        call = bound.arguments
        script_cfg, script_after, evaluate = call["cfg"], call["after_optimizer_step"], call["evaluate"]
        # The loop gets its own copy of the config: no checkpoints, our step limit, no time limit (ours
        # counts training only), and it stops when `after_step` lowers that copy's step limit.
        cfg = dataclasses.replace(
            script_cfg, checkpointing_steps=10**12, max_train_minutes=None, max_train_steps=self.max_steps or script_cfg.max_train_steps
        )
        self.models = call["models"]
        self.batch_size = script_cfg.train_batch_size * script_cfg.gradient_accumulation_steps
        self.mixed_precision = script_cfg.mixed_precision
        next_eval = self.eval_every_seconds
        last = None  # set when the loop starts

        def after_step(state):
            nonlocal next_eval, last
            if script_after is not None:
                script_after(state)
            self.step_seconds.append(time.perf_counter() - last)
            stop = state.global_step >= cfg.max_train_steps or (self.budget_seconds is not None and self.train_seconds >= self.budget_seconds)
            if evaluate is not None and next_eval is not None and (stop or self.train_seconds >= next_eval):
                self._evaluate(evaluate, state)
                while next_eval <= self.train_seconds:
                    next_eval += self.eval_every_seconds
            if self.between_steps is not None:
                self.between_steps(state)
            if stop:
                cfg.max_train_steps = state.global_step  # the loop ends after this step
            last = time.perf_counter()

        call.update(cfg=cfg, after_optimizer_step=after_step, evaluate=None)
        if self.before_loop is not None:
            self.before_loop()
        last = time.perf_counter()
        return shared.train_loop(*bound.args, **bound.kwargs)

    def _evaluate(self, evaluate, state) -> None:
        start = time.perf_counter()
        metrics = evaluate(state)
        seconds = time.perf_counter() - start
        evaluation = Evaluation(state.global_step, self.train_seconds / 60, seconds, dict(metrics))
        self.evaluations.append(evaluation)
        # Also into the script's own record (eval_results.json), with training-only minutes.
        state.metrics = metrics
        state.metrics_history.append((state.global_step, evaluation.train_minutes, metrics))
        logging.getLogger("benchmarks").warning(
            "step %d, %.2f training minutes: overall %s (evaluation %.0f s, off the clock)",
            state.global_step, evaluation.train_minutes, metrics.get("shapes_overall"), seconds,
        )

    def images_per_second(self, skip: int) -> float | None:
        """Batch size / median step time, over the steps after the first `skip` (warm-up)."""
        times = self.step_seconds[skip:]
        return self.batch_size / median(times) if times and self.batch_size else None


def parameter_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def trainable_parameter_count(modules: dict) -> int:
    """Trainable parameters of the modules a script trains (accelerate-prepared modules unwrap to themselves on CPU)."""
    return sum(p.numel() for m in modules.values() for p in m.parameters() if p.requires_grad)

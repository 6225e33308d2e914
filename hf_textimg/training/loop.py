"""The training machinery every script shares: accelerator, tokenizer, data, optimizer,
and one loop with gradient accumulation, clipping, checkpoints, resume, a time budget,
periodic evaluation and a progress bar. Scripts supply only the loss.
"""

from __future__ import annotations

import datetime
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, DistributedType, InitProcessGroupKwargs, ProjectConfiguration, set_seed
from tqdm.auto import tqdm

from ..data.loading import ImageTextCollator, decode_images, load_image_text_dataset
from .checkpointing import check_resume_settings, list_checkpoints, load_checkpoint, load_data_state, resolve_resume_path, save_checkpoint
from .config import TrainConfig, config_to_dict
from .run_lock import lock_output_dir, release_output_dir
from .safety import diverged, nonfinite, nonfinite_weights

logger = logging.getLogger(__name__)


def build_accelerator(cfg: TrainConfig) -> Accelerator:
    if cfg.resume_from_checkpoint not in (None, "latest"):
        resolve_resume_path(cfg.resume_from_checkpoint, cfg.output_dir)  # a wrong path fails now, before any work
    os.makedirs(cfg.output_dir, exist_ok=True)
    accelerator = Accelerator(
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        mixed_precision=cfg.mixed_precision,
        log_with=cfg.report_to,
        project_config=ProjectConfiguration(project_dir=cfg.output_dir, logging_dir=os.path.join(cfg.output_dir, cfg.logging_dir)),
        # Data order = f(seed, epoch), so a resumed run sees the same batches.
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=cfg.seed),
        kwargs_handlers=[InitProcessGroupKwargs(timeout=datetime.timedelta(seconds=cfg.ddp_timeout))],
    )
    if accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        raise ValueError(
            f"accelerate is configured for {accelerator.distributed_type.value}, which shards weights or optimizer states "
            "across processes; these training scripts save full safetensors checkpoints from the main process, so they "
            "support one process or DDP only (`accelerate launch --multi_gpu`). The models fit on one GPU: use DDP."
        )
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        level=logging.INFO if accelerator.is_main_process and not cfg.quiet else logging.WARNING)
    if cfg.quiet:
        datasets.disable_progress_bars()  # datasets' bars, and the data builds' (they use datasets' tqdm)
    lock_run(accelerator, cfg)
    set_seed(cfg.seed)
    return accelerator


def lock_run(accelerator: Accelerator, cfg: TrainConfig) -> None:
    """The main process locks `--output_dir` (hf_textimg.training.run_lock); every process raises if it could not."""
    error = None
    if accelerator.is_main_process:
        try:
            lock_output_dir(cfg.output_dir)
        except ValueError as err:
            error = str(err)
    if accelerator.num_processes > 1:  # the others must not go on (and wait forever) when the main process stops
        failed = accelerator.reduce(torch.tensor([float(error is not None)], device=accelerator.device), reduction="sum")
        if failed.item() and error is None:
            error = f"the main process could not lock --output_dir {cfg.output_dir!r} (its message says why)"
    if error is not None:
        raise ValueError(error)
    earlier = [n for n in ("model_index.json", "config.json") if (Path(cfg.output_dir) / n).is_file()]
    earlier += [p.name for p in list_checkpoints(cfg.output_dir)]
    if earlier and not cfg.resume_from_checkpoint and accelerator.is_main_process:
        logger.warning("%s holds an earlier run's model or checkpoints (%s): this new run overwrites its checkpoints step by step "
                       "and replaces the model when it ends, only if its weights are finite. Use --resume_from_checkpoint to "
                       "continue that run instead, or another --output_dir to keep it.", cfg.output_dir, ", ".join(earlier[:4]))


def end_training(accelerator: Accelerator, cfg: TrainConfig) -> None:
    """`accelerator.end_training()`, then release the `--output_dir` lock: the last call of every script."""
    accelerator.end_training()
    if accelerator.is_main_process:
        release_output_dir(cfg.output_dir)


# ---- data ------------------------------------------------------------------------------
class TensorImageTextDataset(torch.utils.data.Dataset):
    """A split decoded once into a uint8 tensor (N, 3, R, R) plus its captions.

    Small images decode to little memory (50k x 32 px = 150 MB) and indexing a tensor is
    far faster than decoding a PNG per step, which keeps 2 CPU cores on the model.
    """

    def __init__(self, images: torch.Tensor, captions: list | None, extras: dict[str, torch.Tensor] | None = None):
        # extras: per-row tensors (N, ...) a script attaches, returned with each item under their names (e.g.
        # train_prior.py's image concepts, computed once instead of at every step)
        self.images, self.captions, self.extras = images, captions, dict(extras or {})

    @classmethod
    def from_dataset(cls, data, resolution: int, image_column: str, caption_column: str | None, class_column: str | None = None,
                     class_names: list[str] | None = None):
        """Decode `data`. An image that cannot be decoded (corrupt or truncated file, not an image) is skipped
        with its caption, and the run goes on: one warning gives the count, the first rows and the first error.
        If no image decodes, a ValueError says so. With `class_column`, each item also holds `class_labels`: the
        index of its value in `class_names` (-1 for a value not among them)."""
        images, skipped, first_error = decode_images(data, image_column, resolution)  # (N_ok, R, R, 3)
        if skipped:
            if len(images) == 0:
                raise ValueError(f"None of the {len(data)} images in column {image_column!r} could be decoded ({first_error}); check --image_column and the files.")
            logger.warning(
                "Skipped %d of %d images in column %r that could not be decoded (rows %s%s; %s).",
                len(skipped), len(data), image_column, skipped[:10], ", ..." if len(skipped) > 10 else "", first_error,
            )
        images = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()  # (N_ok, 3, R, R)
        bad = set(skipped)
        kept_rows = lambda column: [v for i, v in enumerate(data[column]) if i not in bad]  # noqa: E731  (a column's decoded rows)
        captions = kept_rows(caption_column) if caption_column else None
        extras = {}
        if class_column:
            index = {name: i for i, name in enumerate(class_names)}
            extras["class_labels"] = torch.tensor([index.get(str(v), -1) for v in kept_rows(class_column)], dtype=torch.long)
        return cls(images, captions, extras)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        item = {"pixel_values": self.images[i].float().div(127.5).sub(1.0)}  # (3, R, R) in [-1, 1]
        if self.captions is not None:
            caption = self.captions[i]
            if not isinstance(caption, str):  # a list of alternatives: pick one
                caption = caption[torch.randint(len(caption), ()).item()]
            item["text"] = caption
        item.update({name: values[i] for name, values in self.extras.items()})
        return item


def load_split(cfg: TrainConfig, split: str, max_samples: int | None = None, caption_column: str | None = "default"):
    """A `datasets.Dataset` for `split` of the configured source; for the train split with `--streaming` (or
    `--streaming` unset and a split too large for memory: `resolve_streaming`) a `datasets.IterableDataset` of raw
    rows, which `build_train_dataloader` decodes in its workers."""
    column = cfg.caption_column if caption_column == "default" else caption_column
    if split == "train" and resolve_streaming(cfg, max_samples):
        from ..data.streaming import load_streaming_dataset

        rewrites = getattr(cfg.dataset_args, "train_rewrites", lambda: [])() if cfg.uses_dataset_args else []
        if rewrites:  # prepare_split below runs on an in-memory split only; silently training on the wrong rows loses the run
            raise ValueError(f"{' and '.join(rewrites)} rewrite the train split in memory, which --streaming does not load: "
                             "drop --streaming (this built-in set fits in memory).")

        builtin = None
        if cfg.uses_dataset_args and hasattr(cfg.dataset_args, "streaming_dataset"):  # a built-in set that can render while read
            builtin = lambda: cfg.dataset_args.streaming_dataset(cfg.resolution, cfg.seed)  # noqa: E731
        return load_streaming_dataset(
            dataset_name=cfg.dataset_name if cfg.train_data_dir is None else None, train_data_dir=cfg.train_data_dir, split=split,
            image_column=cfg.image_column, caption_column=column, dataset_config_name=cfg.dataset_config_name, max_samples=max_samples,
            builtin=builtin,
        )
    builtin_kwargs = cfg.dataset_args.builder_kwargs(cfg.seed) if cfg.uses_dataset_args else None
    data = load_image_text_dataset(
        dataset_name=cfg.dataset_name if cfg.train_data_dir is None else None,
        train_data_dir=cfg.train_data_dir,
        split=split,
        image_column=cfg.image_column,
        caption_column=column,
        resolution=cfg.resolution,
        dataset_config_name=cfg.dataset_config_name,
        max_samples=max_samples,
        builtin_kwargs=builtin_kwargs,
        seed=cfg.seed,
    )
    if cfg.uses_dataset_args and hasattr(cfg.dataset_args, "prepare_split"):
        data = cfg.dataset_args.prepare_split(data, split, column)  # e.g. --emoji_caption_style on the train captions
    return data


def resolve_streaming(cfg: TrainConfig, max_samples: int | None = None) -> bool:
    """Whether the train split streams: `--streaming` as given, else decided once by the split's size
    (`choose_streaming`) and written back into `cfg.streaming`, so checkpoints and cards record what ran."""
    if cfg.streaming is not None:
        reason = f"--streaming {str(cfg.streaming).lower()}"
    elif cfg.uses_dataset_args and not hasattr(cfg.dataset_args, "streaming_dataset"):
        cfg.streaming, reason = False, f"the built-in {cfg.dataset_name!r} set has no streaming mode"
    else:
        from accelerate import PartialState

        from ..data.streaming import choose_streaming, count_rows

        if cfg.uses_dataset_args:
            rows = cfg.dataset_args.num_train_rows  # a built-in set that streams knows its size
        else:
            rows = count_rows(cfg.dataset_name if cfg.train_data_dir is None else None, cfg.train_data_dir, "train", cfg.dataset_config_name)
        if rows is not None and max_samples is not None:
            rows = min(rows, max_samples)
        local = int(os.environ.get("LOCAL_WORLD_SIZE", PartialState().num_processes))
        cfg.streaming, reason = choose_streaming(None, rows, cfg.resolution, local)
    logger.info("Train split %s (%s).", "streamed" if cfg.streaming else "decoded into memory", reason)
    return cfg.streaming


def build_train_dataloader(cfg: TrainConfig, data, tokenizer=None, caption_column: str | None = "default", class_column: str | None = None,
                           class_names: list[str] | None = None):
    """The in-memory DataLoader for a `datasets.Dataset`; a `StreamingDataLoader` (this process's shards, decoded in
    `--dataloader_num_workers` workers) for a `datasets.IterableDataset` from `load_split`. `class_column`: batches
    also hold `class_labels` (see `TensorImageTextDataset.from_dataset`; a split in memory only)."""
    import datasets

    column = cfg.caption_column if caption_column == "default" else caption_column
    collate_fn = ImageTextCollator(tokenizer, cfg.max_length, cfg.prompt_normalization)
    if isinstance(data, datasets.IterableDataset):
        from accelerate import PartialState

        from ..data.streaming import build_streaming_dataloader

        process = PartialState()
        return build_streaming_dataloader(
            data, cfg.resolution, cfg.train_batch_size, collate_fn, cfg.image_column, column, cfg.dataloader_num_workers,
            cfg.shuffle_buffer_size, cfg.seed, process.process_index, process.num_processes, process.device,
        )
    dataset = TensorImageTextDataset.from_dataset(data, cfg.resolution, cfg.image_column, column, class_column, class_names)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=cfg.train_batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=cfg.dataloader_num_workers,
        collate_fn=collate_fn,
        # Without its own generator a DataLoader draws each iterator's base seed from the global
        # RNG, which would shift every random draw of a run resumed mid-epoch.
        generator=torch.Generator().manual_seed(cfg.seed),
    )


def load_or_train_tokenizer(cfg: TrainConfig, captions, accelerator: Accelerator | None = None, pretrained: str | None = None):
    """`--tokenizer_name`, else `pretrained` (e.g. the concept model folder), else one trained on `captions`.

    A trained tokenizer (the deterministic "word" model of `train_tokenizer`) is written once to
    ``output_dir/tokenizer`` by the main process and every process loads that copy; a resumed run
    reuses the copy beside its checkpoint, so a changed data set cannot change the ids mid-run.
    """
    from transformers import AutoTokenizer

    from ..tokenization import train_tokenizer

    if cfg.tokenizer_name or pretrained:
        tokenizer = AutoTokenizer.from_pretrained(cfg.tokenizer_name or pretrained)
    else:
        folder = Path(cfg.output_dir) / "tokenizer"
        resume = resolve_resume_path(cfg.resume_from_checkpoint, cfg.output_dir)
        if resume is not None and (resume.parent / "tokenizer").is_dir():
            folder = resume.parent / "tokenizer"
        elif accelerator is None or accelerator.is_main_process:
            train_tokenizer(captions, vocab_size=cfg.tokenizer_vocab_size, model_max_length=cfg.max_length).save_pretrained(folder)
        if accelerator is not None:
            accelerator.wait_for_everyone()
        tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.model_max_length = cfg.max_length  # pipelines tokenize to the training length
    return tokenizer


def tracker_config(cfg: TrainConfig) -> dict:
    """The config as tracker hyper-parameters (scalars only: lists become strings)."""
    return {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in config_to_dict(cfg).items() if v is not None}


def set_memory_format(cfg: TrainConfig, *modules: torch.nn.Module) -> None:
    """`--channels_last`: conv weights (4-d parameters) of `modules` in NHWC layout, before `accelerator.prepare`
    (DDP then buckets the gradients in that layout). oneDNN convolutions then produce NHWC activations."""
    if cfg.channels_last:
        for module in modules:
            module.to(memory_format=torch.channels_last)


# ---- optimisation ------------------------------------------------------------------------
def param_groups(trained: dict[str, torch.nn.Module], learning_rates: dict[str, float | None]) -> list[dict]:
    """One torch param group per trained module; `learning_rates[name]` (when set) overrides --learning_rate for it,
    e.g. {"text_encoder": cfg.text_encoder_lr}."""
    return [{"params": list(module.parameters()), **({"lr": learning_rates[name]} if learning_rates.get(name) else {})}
            for name, module in trained.items()]


def check_text_encoder_lr(cfg) -> None:
    """--text_encoder_lr only means something for a tower that trains."""
    if cfg.text_encoder_lr is not None and (cfg.text_encoder_lr <= 0 or not cfg.train_text_encoder):
        raise ValueError(f"--text_encoder_lr {cfg.text_encoder_lr} needs --train_text_encoder and a value > 0.")


def build_optimizer(cfg: TrainConfig, params, num_training_steps: int | None = None):
    """AdamW + the `--lr_scheduler` schedule. `params` is parameters or torch param groups
    (dicts with "params" and e.g. their own "lr"); frozen parameters are dropped."""
    from diffusers.optimization import get_scheduler

    groups = list(params)
    if not groups or not isinstance(groups[0], dict):
        groups = [{"params": groups}]
    groups = [{**g, "params": [p for p in g["params"] if p.requires_grad]} for g in groups]
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise ValueError("No trainable parameters: every parameter has requires_grad=False.")
    optimizer = torch.optim.AdamW(
        groups,
        lr=cfg.learning_rate,
        betas=(cfg.adam_beta1, cfg.adam_beta2),
        weight_decay=cfg.adam_weight_decay,
        eps=cfg.adam_epsilon,
        **({"fused": True} if cfg.adam_fused else {"foreach": True}),
    )
    lr_scheduler = get_scheduler(
        cfg.lr_scheduler, optimizer, num_warmup_steps=cfg.lr_warmup_steps, num_training_steps=num_training_steps or cfg.max_train_steps
    )
    return optimizer, lr_scheduler


# ---- the loop ----------------------------------------------------------------------------
@dataclass
class TrainState:
    global_step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0  # micro-batches consumed in the current epoch
    elapsed_seconds: float = 0.0
    history: list = field(default_factory=list)  # (step, loss) every step, for tests and curves
    metrics: dict = field(default_factory=dict)  # the latest evaluation
    metrics_history: list = field(default_factory=list)  # (step, minutes, metrics) per evaluation
    last_checkpoint: str | None = None  # the newest checkpoint with finite weights (saved or resumed from)
    skipped_steps: int = 0  # optimizer steps dropped for a NaN/inf loss or gradient (--max_skipped_nonfinite_steps)


def train_loop(
    accelerator: Accelerator,
    cfg: TrainConfig,
    models: dict[str, torch.nn.Module],
    optimizer,
    lr_scheduler,
    dataloader,
    compute_loss: Callable[[dict], tuple[torch.Tensor, dict]],
    after_optimizer_step: Callable[[TrainState], None] | None = None,
    evaluate: Callable[[TrainState], dict] | None = None,
    extra_checkpoint_models: Callable[[], dict] | None = None,
) -> TrainState:
    """Run `cfg.max_train_steps` optimizer steps (or until `cfg.max_train_minutes`).

    `models` are the prepared, trained modules (saved in checkpoints and accumulated over);
    `compute_loss(batch)` returns (loss, logs); `after_optimizer_step(state)` runs after
    each real optimizer step (e.g. EMA update, clamping); `evaluate(state)` returns metrics
    logged every `cfg.validation_steps` and at the end.
    """
    streaming = getattr(dataloader, "is_streaming", False)  # hf_textimg.data.streaming.StreamingDataLoader: endless, no len()
    if not streaming and len(dataloader) == 0:
        raise ValueError(
            f"The training set ({len(dataloader.dataset)} examples) is smaller than one batch of --train_batch_size "
            f"{cfg.train_batch_size} x {accelerator.num_processes} processes; lower --train_batch_size or add data."
        )
    # Model initialisation used the shared seed (identical on every process); from here each process draws its own
    # noise, dropout and caption choices (seed + process index), or every GPU would repeat the same random numbers.
    set_seed(cfg.seed, device_specific=True)
    state = TrainState()
    checkpoint_models = lambda: {**models, **(extra_checkpoint_models() if extra_checkpoint_models else {})}  # noqa: E731
    resume = resolve_resume_path(cfg.resume_from_checkpoint, cfg.output_dir)
    if resume is not None:
        check_resume_settings(resume, _saved_config(resume), config_to_dict(cfg), accelerator.num_processes)
        saved = load_checkpoint(accelerator, resume, checkpoint_models(), optimizer, lr_scheduler)
        state.global_step, state.epoch, state.batch_in_epoch = saved["global_step"], saved["epoch"], saved["batch_in_epoch"]
        state.elapsed_seconds = saved.get("elapsed_seconds", 0.0)
        state.last_checkpoint = str(resume)
        if streaming:
            dataloader.load_state_dict(load_data_state(resume, accelerator.process_index))
        logger.info("Resumed from %s at step %d", resume, state.global_step)

    logger.info(
        "Training %d steps: %s batches/epoch, batch %d x %d processes x %d accumulation",
        cfg.max_train_steps, "streamed" if streaming else len(dataloader), cfg.train_batch_size, accelerator.num_processes,
        cfg.gradient_accumulation_steps,
    )
    progress = tqdm(range(cfg.max_train_steps), initial=state.global_step, desc="Steps",
                    disable=cfg.quiet or not accelerator.is_local_main_process)
    start = time.perf_counter() - state.elapsed_seconds
    out_of_time, problem = False, None
    while state.global_step < cfg.max_train_steps and not out_of_time:
        if streaming:  # endless (epochs turn inside it, per process); a resumed run continues from its loaded state
            batches = dataloader
        else:
            dataloader.set_epoch(state.epoch)
            batches = accelerator.skip_first_batches(dataloader, state.batch_in_epoch) if state.batch_in_epoch else dataloader
        for batch in batches:
            state.batch_in_epoch += 1
            with accelerator.accumulate(*models.values()):
                loss, logs = compute_loss(batch)
                problem = problem or _backward_checked(accelerator, cfg, models, loss)
                if not (accelerator.sync_gradients and problem):
                    optimizer.step()
                    lr_scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            if not accelerator.sync_gradients:
                continue
            if problem:  # the whole accumulation window is dropped, or the run stops
                state.skipped_steps += 1
                if state.skipped_steps > cfg.max_skipped_nonfinite_steps:
                    raise diverged(cfg, state.global_step + 1, f"{problem} ({state.skipped_steps - 1} such steps skipped before, "
                                   f"--max_skipped_nonfinite_steps {cfg.max_skipped_nonfinite_steps})", state.last_checkpoint)
                logger.warning("Step %d skipped: %s (%d of --max_skipped_nonfinite_steps %d).", state.global_step + 1, problem,
                               state.skipped_steps, cfg.max_skipped_nonfinite_steps)
                problem = None
                continue

            state.global_step += 1
            state.elapsed_seconds = time.perf_counter() - start
            if after_optimizer_step is not None:
                after_optimizer_step(state)
            loss_value = accelerator.reduce(loss.detach(), reduction="mean").item()
            state.history.append((state.global_step, loss_value))
            logs = {"loss": loss_value, "lr": lr_scheduler.get_last_lr()[0], **{k: float(v) for k, v in logs.items()}}
            progress.update(1)
            progress.set_postfix(loss=f"{loss_value:.4f}")
            accelerator.log(logs, step=state.global_step)

            out_of_time = cfg.max_train_minutes is not None and state.elapsed_seconds >= 60 * cfg.max_train_minutes
            if cfg.max_train_minutes is not None and accelerator.num_processes > 1:
                # Each process has its own clock: stop all at the same step, as soon as any is out of time, or the
                # ones that carry on wait forever in the next all-reduce.
                out_of_time = accelerator.reduce(torch.tensor(float(out_of_time), device=accelerator.device), reduction="sum").item() > 0
            done = state.global_step >= cfg.max_train_steps or out_of_time
            if evaluate is not None and (state.global_step % cfg.validation_steps == 0 or done):
                eval_start = time.perf_counter()
                state.metrics = evaluate(state)
                start += time.perf_counter() - eval_start  # the clock (budget, curves) counts training, not evaluation
                state.metrics_history.append((state.global_step, state.elapsed_seconds / 60, state.metrics))
                accelerator.log(state.metrics, step=state.global_step)
                logger.info("step %d: %s", state.global_step, {k: round(v, 4) for k, v in state.metrics.items()})
            if state.global_step % cfg.checkpointing_steps == 0:
                _check_weights(cfg, state, checkpoint_models())  # never a checkpoint of NaN weights
                state.epoch = dataloader.epoch if streaming else state.epoch
                checkpoint = save_checkpoint(
                    accelerator, cfg.output_dir, state.global_step, checkpoint_models(), optimizer, lr_scheduler,
                    {**_state_dict(state), "config": config_to_dict(cfg)}, limit=cfg.checkpoints_total_limit,
                    data_state=dataloader.state_dict() if streaming else None,
                )
                state.last_checkpoint = str(checkpoint)
                if cfg.push_to_hub and accelerator.is_main_process:
                    from ..hub import push_checkpoint

                    push_checkpoint(cfg, checkpoint, state.global_step)  # as last-checkpoint/, with output_dir so far
            if done:
                break
        else:
            state.epoch += 1
            state.batch_in_epoch = 0
    progress.close()
    _check_weights(cfg, state, checkpoint_models())  # what the script saves next must be finite
    return state


def _backward_checked(accelerator: Accelerator, cfg: TrainConfig, models: dict, loss: torch.Tensor) -> str | None:
    """Backward and (at the end of an accumulation window) gradient clipping, unless the loss or the gradient norm
    is NaN/inf on any process: then what went wrong, as text, and the caller drops the step."""
    if nonfinite(loss, accelerator):
        return f"the loss is {loss.item()}"
    accelerator.backward(loss)
    if not accelerator.sync_gradients:
        return None
    params = [p for m in models.values() for p in m.parameters() if p.requires_grad]
    if cfg.mixed_precision == "fp16":  # the grad scaler skips inf-gradient steps itself and lowers its scale
        if cfg.max_grad_norm > 0:
            accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
        return None
    # max_norm=inf measures without clipping (a factor of exactly 1.0)
    norm = accelerator.clip_grad_norm_(params, cfg.max_grad_norm if cfg.max_grad_norm > 0 else float("inf"))
    return f"the gradient norm is {float(norm)}" if nonfinite(torch.as_tensor(norm), accelerator) else None


def _check_weights(cfg: TrainConfig, state: TrainState, models: dict) -> None:
    bad = nonfinite_weights(models)
    if bad:
        raise diverged(cfg, state.global_step, f"the weights of {bad} hold NaN/inf", state.last_checkpoint)


def _saved_config(checkpoint: Path) -> dict | None:
    import json

    return json.loads((checkpoint / "trainer_state.json").read_text()).get("config")


def _state_dict(state: TrainState) -> dict:
    return {"global_step": state.global_step, "epoch": state.epoch, "batch_in_epoch": state.batch_in_epoch, "elapsed_seconds": state.elapsed_seconds}


def write_json(path: str | os.PathLike, obj) -> None:
    import json

    Path(path).write_text(json.dumps(obj, indent=2, default=str) + "\n")


def run_result(state: TrainState) -> dict:
    """What `main()` of every script returns: steps, minutes, final and per-evaluation metrics, losses."""
    return {
        "global_step": state.global_step,
        "train_minutes": state.elapsed_seconds / 60,
        "metrics": state.metrics,
        "metrics_history": state.metrics_history,
        "loss_history": state.history,
    }


def write_eval_results(cfg: TrainConfig, result: dict) -> None:
    """``output_dir/eval_results.json`` (everything but the per-step losses, plus the config) and a summary line."""
    import math

    write_json(Path(cfg.output_dir) / "eval_results.json", {**{k: v for k, v in result.items() if k != "loss_history"}, "config": config_to_dict(cfg)})
    print({k: round(v, 4) if isinstance(v, float) and math.isfinite(v) else v for k, v in result["metrics"].items()})

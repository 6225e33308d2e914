"""Shared training machinery for the scripts in `training/` (arguments, data, loop, checkpoints)."""

from .checkpointing import list_checkpoints, load_checkpoint, resolve_resume_path, save_checkpoint
from .ema import EMAWeights, build_emas, ema_checkpoint_modules, ema_eval_mode, ema_weights
from .config import TrainConfig, config_to_dict, parse_args
from .loop import (
    TensorImageTextDataset,
    TrainState,
    build_accelerator,
    build_optimizer,
    build_train_dataloader,
    check_text_encoder_lr,
    end_training,
    load_or_train_tokenizer,
    load_split,
    param_groups,
    run_result,
    set_memory_format,
    tracker_config,
    write_eval_results,
    train_loop,
    write_json,
)

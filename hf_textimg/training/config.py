"""The arguments every training script shares, as one dataclass parsed by `HfArgumentParser`.

Names follow diffusers' text-to-image example (`--dataset_name`, `--train_data_dir`,
`--image_column`, `--caption_column`, `--resolution`, `--train_batch_size`,
`--learning_rate`, `--lr_scheduler`, `--mixed_precision`, ...), so its users already know
them. Each script subclasses `TrainConfig` with only its own fields:

    @dataclass
    class ConceptTrainConfig(TrainConfig):
        objective: str = "contrastive"

    cfg = parse_args(ConceptTrainConfig, argv, ShapesDataArguments)

A built-in data set's own options (`hf_textimg.shapes.ShapesDataArguments`) are a dataclass of their own, parsed
beside the script's config, as transformers' examples parse `ModelArguments` beside `TrainingArguments`; the config
holds them as `cfg.dataset_args`, so this general layer never imports a data world.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from transformers import HfArgumentParser

from ..data.prompts import check_prompt_normalization
from ..utils.checks import check_output_dir
from ..utils.resolution import check_resolution
from .safety import check_config_numbers


@dataclass
class TrainConfig:
    # Data
    dataset_name: str | None = field(
        default="shapes", metadata={"help": 'Built-in "shapes"/"emoji", a save_to_disk folder, or a datasets Hub id.'}
    )
    train_data_dir: str | None = field(default=None, metadata={"help": "An imagefolder directory (instead of --dataset_name)."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "Config name for datasets.load_dataset."})
    image_column: str = field(default="image", metadata={"help": "Column holding the images."})
    caption_column: str = field(default="text", metadata={"help": "Column holding the captions (str or list of str)."})
    validation_split: str = field(default="validation", metadata={"help": "Split used for evaluation during training."})
    resolution: int = field(
        default=32, metadata={"help": "Image side in pixels (the Shapes world: 32 or 64; a model with n levels: a multiple of 2**(n - 1))."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Truncate the train split (quick runs)."})
    max_eval_samples: int | None = field(default=2000, metadata={"help": "Truncate the evaluation split."})
    prompt_normalization: str | None = field(
        default=None, metadata={"help": "Rewrite every caption this way before tokenizing; the saved pipeline stores it and rewrites prompts "
                                "the same way. shapes_relations: 'b right of a' -> 'a left of b' (hf_textimg.data.prompts)."},
    )
    random_flip: bool = field(default=False, metadata={"help": "Random horizontal flips (off: captions say left/right)."})
    dataloader_num_workers: int = field(default=0, metadata={"help": "DataLoader worker processes (with --streaming they decode the images)."})
    streaming: bool | None = field(
        default=None, metadata={"help": "Read the train split while training (datasets' streaming mode; images decoded in the DataLoader "
                                "workers) instead of decoding it all into memory first. Unset: in memory while the decoded split fits "
                                "(hf_textimg.data.streaming.choose_streaming), else streaming; the log says which was taken.",
                                "nargs": "?", "const": True},  # `--streaming` alone means true, as for the other switches
    )
    shuffle_buffer_size: int = field(default=1000, metadata={"help": "--streaming: rows shuffled together (one block at a time, per worker)."})

    # Tokenizer
    tokenizer_name: str | None = field(default=None, metadata={"help": "Tokenizer folder; default: train one on the captions."})
    tokenizer_vocab_size: int = field(default=4096, metadata={"help": "Vocabulary size when training a tokenizer."})
    max_length: int = field(default=32, metadata={"help": "Caption length in tokens (longer captions are truncated)."})

    # Optimisation
    train_batch_size: int = field(default=64, metadata={"help": "Batch size per process."})
    max_train_steps: int = field(default=1000, metadata={"help": "Optimizer steps to train for."})
    max_train_minutes: float | None = field(default=None, metadata={"help": "Stop (and save) after this many minutes of training (evaluation time excluded)."})
    learning_rate: float = field(default=1e-3, metadata={"help": "Peak learning rate."})
    lr_scheduler: str = field(
        default="cosine",
        metadata={"help": 'diffusers.optimization.get_scheduler name: "linear", "cosine", "constant", "constant_with_warmup", ...'},
    )
    lr_warmup_steps: int = field(default=50, metadata={"help": "Warm-up steps of the schedule."})
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_weight_decay: float = 1e-2
    adam_epsilon: float = 1e-8
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm (0 disables)."})
    max_skipped_nonfinite_steps: int = field(
        default=0, metadata={"help": "Optimizer steps with a NaN/inf loss or gradient norm to skip before the run stops "
                             "(non-zero exit, nothing saved after the last good checkpoint; hf_textimg.training.safety)."},
    )
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Micro-batches per optimizer step."})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Trade compute for memory."})
    mixed_precision: Literal["no", "fp16", "bf16"] = field(default="no", metadata={"help": "Autocast precision."})
    channels_last: bool = field(default=False, metadata={"help": "Keep conv weights in channels-last memory format (NHWC)."})
    adam_fused: bool = field(default=False, metadata={"help": "torch.optim.AdamW(fused=True) instead of foreach=True."})
    seed: int = field(default=0, metadata={"help": "Seed for model init, data order and noise."})
    ddp_timeout: int = field(
        default=1800, metadata={"help": "Seconds a process waits for the others (e.g. while the main one evaluates) before "
                                "the process group gives up (transformers' --ddp_timeout)."},
    )

    # Checkpoints and output
    output_dir: str = field(default="outputs/run", metadata={"help": "Where the final model and checkpoints go."})
    checkpointing_steps: int = field(default=500, metadata={"help": "Save a resumable checkpoint every N steps."})
    checkpoints_total_limit: int | None = field(default=None, metadata={"help": "Keep only the newest N checkpoints."})
    resume_from_checkpoint: str | None = field(
        default=None, metadata={"help": 'A checkpoint folder, or "latest" (start fresh, with a warning, when none exists).'}
    )
    validation_steps: int = field(default=500, metadata={"help": "Evaluate every N steps (and at the end)."})
    report_to: str | None = field(default=None, metadata={"help": 'Tracker for accelerate ("tensorboard", "wandb", ...).'})
    logging_dir: str = field(default="logs", metadata={"help": "Tracker folder, relative to output_dir."})
    quiet: bool = field(default=False, metadata={"help": "No progress bars (training steps, data builds) and no info lines; warnings and errors still print."})

    # Sharing on the Hub (hf_textimg.hub): the model card is written to output_dir/README.md either way
    push_to_hub: bool = field(default=False, metadata={"help": "Upload output_dir to the Hub at every checkpoint and at the end."})
    hub_model_id: str | None = field(default=None, metadata={"help": 'Repo to push to, "name" or "namespace/name" (default: the output_dir folder name).'})
    hub_token: str | None = field(default=None, metadata={"help": "Hub token (default: HF_TOKEN or `hf auth login`); never written to any file."})
    hub_private_repo: bool = field(default=False, metadata={"help": "Create the repo as private."})

    # The built-in data set's options (e.g. hf_textimg.shapes.ShapesDataArguments), set by `parse_args`: not a flag.
    dataset_args: Any = field(default=None, init=False, repr=False, compare=False)

    @property
    def uses_shapes(self) -> bool:
        """Training on the built-in Shapes world (so the Shapes scorer and splits apply)."""
        return self.dataset_name == "shapes" and self.train_data_dir is None

    @property
    def uses_dataset_args(self) -> bool:
        """`dataset_args` are the options of the built-in data set this run trains on."""
        return self.dataset_args is not None and self.train_data_dir is None and self.dataset_name == self.dataset_args.dataset_name

    @property
    def uses_emoji(self) -> bool:
        """Training on the built-in Emoji set (so its styles, caption option and splits apply)."""
        return self.dataset_name == "emoji" and self.train_data_dir is None

    def validate(self) -> None:
        """Raise a ValueError naming the argument for settings that cannot work."""
        if self.dataset_name is None and self.train_data_dir is None:
            raise ValueError("Pass --dataset_name (e.g. shapes) or --train_data_dir (an imagefolder).")
        check_resolution(self.resolution, name="--resolution")
        if self.uses_dataset_args:
            self.dataset_args.validate(self.resolution)
        check_prompt_normalization(self.prompt_normalization, "--prompt_normalization")
        if self.ddp_timeout < 1:
            raise ValueError(f"--ddp_timeout must be >= 1 second, got {self.ddp_timeout}.")
        if self.dataloader_num_workers < 0:
            raise ValueError(f"--dataloader_num_workers must be >= 0, got {self.dataloader_num_workers}.")
        for name in ("train_batch_size", "max_train_steps", "shuffle_buffer_size", "gradient_accumulation_steps", "checkpointing_steps", "validation_steps", "max_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}.")
        if self.learning_rate <= 0:
            raise ValueError(f"--learning_rate must be > 0, got {self.learning_rate}.")
        if self.checkpoints_total_limit is not None and self.checkpoints_total_limit < 1:
            raise ValueError(f"--checkpoints_total_limit must be >= 1 or unset, got {self.checkpoints_total_limit}.")
        if self.hub_model_id is not None and (self.hub_model_id.count("/") > 1 or "" in self.hub_model_id.split("/")):
            raise ValueError(f"--hub_model_id must be 'name' or 'namespace/name', got {self.hub_model_id!r}.")
        check_output_dir(self.output_dir, "--output_dir")  # a folder that can be written (not a file, not under one)
        check_config_numbers(self)  # finite numbers, optimizer ranges, --lr_scheduler name (hf_textimg.training.safety)


def parse_args(config_cls: type[TrainConfig], argv: list[str] | None = None, *dataset_args_classes: type) -> TrainConfig:
    """Parse `argv` (default: sys.argv) into `config_cls` and the built-in data sets' options `dataset_args_classes`
    (each a dataclass with a `dataset_name`), keep the options of the data set this run trains on as
    `cfg.dataset_args` (None for any other data), and validate them."""
    cfg, *dataset_args = HfArgumentParser((config_cls, *dataset_args_classes)).parse_args_into_dataclasses(args=argv)
    if cfg.train_data_dir is None:
        cfg.dataset_args = next((args for args in dataset_args if args.dataset_name == cfg.dataset_name), None)
    cfg.validate()
    return cfg


def config_to_dict(cfg: TrainConfig) -> dict:
    """The config (with its data set's options, flat) as a dict for checkpoints, trackers and eval_results.json; the
    Hub token is left out."""
    config = {f.name: None if f.name == "hub_token" else getattr(cfg, f.name) for f in fields(cfg) if f.name != "dataset_args"}
    return {**config, **(asdict(cfg.dataset_args) if cfg.dataset_args is not None else {})}

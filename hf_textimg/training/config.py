"""The arguments every training script shares, as one dataclass parsed by `HfArgumentParser`.

Names follow diffusers' text-to-image example (`--dataset_name`, `--train_data_dir`,
`--image_column`, `--caption_column`, `--resolution`, `--train_batch_size`,
`--learning_rate`, `--lr_scheduler`, `--mixed_precision`, ...), so its users already know
them. Each script subclasses `TrainConfig` with only its own fields:

    @dataclass
    class ConceptTrainConfig(TrainConfig):
        objective: str = "contrastive"

    cfg = parse_args(ConceptTrainConfig, argv)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Literal

from transformers import HfArgumentParser

from ..data.prompts import check_prompt_normalization

SUPPORTED_RESOLUTIONS = (32, 64)


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
    resolution: int = field(default=32, metadata={"help": f"Image side in pixels; one of {SUPPORTED_RESOLUTIONS}."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Truncate the train split (quick runs)."})
    max_eval_samples: int | None = field(default=2000, metadata={"help": "Truncate the evaluation split."})
    num_shapes_train: int = field(default=50000, metadata={"help": "Size of the generated Shapes train split."})
    num_shapes_eval: int = field(default=2000, metadata={"help": "Size of the generated Shapes validation and heldout splits."})
    shapes_kind_probs: list[float] | None = field(
        default=None, metadata={"help": "Shapes train/validation mix: weights of single, count, pair, relation scenes (default 0.4 0.2 0.2 0.2)."}
    )
    shapes_relation_layout: Literal["any", "canonical"] = field(
        default="any", metadata={"help": "Shapes relation scenes: any line and cells the relation allows, or one canonical layout "
                                 "per relation (middle line, outer cells; see hf_textimg.data.shapes.RELATION_LAYOUTS)."},
    )
    shapes_count_layout: Literal["any", "canonical"] = field(
        default="any", metadata={"help": "Shapes count scenes: n random distinct cells, or one canonical layout per count "
                                 "(two: middle row's outer cells, three: middle row, four: corners; hf_textimg.data.shapes.COUNT_LAYOUTS)."},
    )
    shapes_single_layout: Literal["any", "canonical"] = field(
        default="any", metadata={"help": "Shapes single scenes whose caption names no size / position: a random size and cell, or "
                                 "large and in the centre (hf_textimg.data.shapes.SINGLE_LAYOUTS)."},
    )
    shapes_pair_layout: Literal["any", "canonical"] = field(
        default="any", metadata={"help": "Shapes pair scenes: two random distinct cells, or the middle row's outer cells, first-named "
                                 "object on the left (hf_textimg.data.shapes.PAIR_LAYOUTS)."},
    )
    emoji_styles: list[str] = field(
        default_factory=lambda: ["noto"], metadata={"help": "Built-in emoji set: artwork styles, any of noto twemoji openmoji fluent "
                                                    "(hf_textimg.data.emoji; a missing npm package is an error naming the command that fetches it)."},
    )
    emoji_caption_style: Literal["always", "sometimes", "never"] = field(
        default="always", metadata={"help": "Built-in emoji set, train split: captions 'crab, noto style' (always), the name alone "
                                    "'crab' (never: the prompt then means any style), or either at random each time (sometimes)."},
    )
    prompt_normalization: str | None = field(
        default=None, metadata={"help": "Rewrite every caption this way before tokenizing; the saved pipeline stores it and rewrites prompts "
                                "the same way. shapes_relations: 'b right of a' -> 'a left of b' (hf_textimg.data.prompts)."},
    )
    random_flip: bool = field(default=False, metadata={"help": "Random horizontal flips (off: captions say left/right)."})
    dataloader_num_workers: int = field(default=0, metadata={"help": "DataLoader worker processes."})

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

    # Sharing on the Hub (hf_textimg.hub): the model card is written to output_dir/README.md either way
    push_to_hub: bool = field(default=False, metadata={"help": "Upload output_dir to the Hub at every checkpoint and at the end."})
    hub_model_id: str | None = field(default=None, metadata={"help": 'Repo to push to, "name" or "namespace/name" (default: the output_dir folder name).'})
    hub_token: str | None = field(default=None, metadata={"help": "Hub token (default: HF_TOKEN or `hf auth login`); never written to any file."})
    hub_private_repo: bool = field(default=False, metadata={"help": "Create the repo as private."})

    @property
    def uses_shapes(self) -> bool:
        """Training on the built-in Shapes world (so the Shapes scorer and splits apply)."""
        return self.dataset_name == "shapes" and self.train_data_dir is None

    @property
    def uses_emoji(self) -> bool:
        """Training on the built-in Emoji set (so its styles, caption option and splits apply)."""
        return self.dataset_name == "emoji" and self.train_data_dir is None

    def validate(self) -> None:
        """Raise a ValueError naming the argument for settings that cannot work."""
        if self.dataset_name is None and self.train_data_dir is None:
            raise ValueError("Pass --dataset_name (e.g. shapes) or --train_data_dir (an imagefolder).")
        if self.resolution not in SUPPORTED_RESOLUTIONS:
            raise ValueError(f"--resolution {self.resolution} is not supported; use one of {SUPPORTED_RESOLUTIONS}.")
        check_prompt_normalization(self.prompt_normalization, "--prompt_normalization")
        from hf_textimg.data.emoji_sources import STYLES as EMOJI_STYLES

        if not self.emoji_styles or set(self.emoji_styles) - set(EMOJI_STYLES):
            raise ValueError(f"--emoji_styles must be one or more of {' '.join(EMOJI_STYLES)}, got {' '.join(self.emoji_styles) or 'nothing'}.")
        if self.shapes_kind_probs is not None:
            from hf_textimg.data.shapes import check_kind_probs

            try:
                check_kind_probs(self.shapes_kind_probs)
            except ValueError as err:
                raise ValueError(f"--shapes_kind_probs: {err}") from None
        if self.ddp_timeout < 1:
            raise ValueError(f"--ddp_timeout must be >= 1 second, got {self.ddp_timeout}.")
        for name in ("train_batch_size", "max_train_steps", "gradient_accumulation_steps", "checkpointing_steps", "validation_steps", "max_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}.")
        if self.learning_rate <= 0:
            raise ValueError(f"--learning_rate must be > 0, got {self.learning_rate}.")
        if self.checkpoints_total_limit is not None and self.checkpoints_total_limit < 1:
            raise ValueError(f"--checkpoints_total_limit must be >= 1 or unset, got {self.checkpoints_total_limit}.")
        if self.hub_model_id is not None and (self.hub_model_id.count("/") > 1 or "" in self.hub_model_id.split("/")):
            raise ValueError(f"--hub_model_id must be 'name' or 'namespace/name', got {self.hub_model_id!r}.")
        parent = os.path.dirname(os.path.abspath(self.output_dir))
        probe = self.output_dir if os.path.isdir(self.output_dir) else parent
        while not os.path.exists(probe):
            probe = os.path.dirname(probe)
        if not os.access(probe, os.W_OK):
            raise ValueError(f"--output_dir {self.output_dir!r} is not writable ({probe!r} denies writing); choose another folder.")


def parse_args(config_cls: type[TrainConfig], argv: list[str] | None = None) -> TrainConfig:
    """Parse `argv` (default: sys.argv) into `config_cls` and validate it."""
    (cfg,) = HfArgumentParser(config_cls).parse_args_into_dataclasses(args=argv)
    cfg.validate()
    return cfg


def config_to_dict(cfg: TrainConfig) -> dict:
    """The config as a dict for checkpoints, trackers and eval_results.json; the Hub token is left out."""
    return {f.name: None if f.name == "hub_token" else getattr(cfg, f.name) for f in fields(cfg)}

"""Train the image auto-encoder (image -> 512-d code -> image) with a reconstruction loss.

    accelerate launch training/train_autoencoder.py --dataset_name shapes --output_dir outputs/autoencoder-shapes
    accelerate launch training/train_autoencoder.py --train_data_dir my_images/ --resolution 64 --l1_weight 0.5

Captions are not used, so any image set works (captioned or not; `--caption_column` is ignored). The output folder
holds the `ConceptAutoencoder` (config.json + diffusion_pytorch_model.safetensors, loadable with
`ConceptAutoencoder.from_pretrained(dir)`) and `eval_results.json` with the validation reconstruction PSNR.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from hf_textimg.autoencoder import ConceptAutoencoder, reconstruction_loss
from hf_textimg.hub import write_card_and_push
from hf_textimg.data.emoji_arguments import EmojiDataArguments
from hf_textimg.shapes import ShapesDataArguments
from hf_textimg.training import (
    TensorImageTextDataset,
    TrainConfig,
    build_accelerator,
    build_optimizer,
    build_train_dataloader,
    end_training,
    load_split,
    parse_args,
    run_result,
    set_memory_format,
    tracker_config,
    train_loop,
    write_eval_results,
)
from hf_textimg.training.checkpointing import final_save
from hf_textimg.training.entry import run_script


@dataclass
class AutoencoderTrainConfig(TrainConfig):
    code_dim: int = field(default=512, metadata={"help": "Size of the code."})
    encoder_block_out_channels: list[int] = field(
        default_factory=lambda: [32, 64, 128, 128], metadata={"help": "Encoder width per level, full resolution first."}
    )
    decoder_block_out_channels: list[int] = field(
        default_factory=lambda: [128, 64, 32, 16], metadata={"help": "Decoder width per level, lowest resolution first."}
    )
    layers_per_block: int = field(default=1, metadata={"help": "Residual blocks per level."})
    norm_num_groups: int = field(default=8, metadata={"help": "GroupNorm groups (must divide every width)."})
    l1_weight: float = field(default=0.0, metadata={"help": "Loss = MSE + l1_weight * L1."})

    def validate(self) -> None:
        super().validate()
        if self.l1_weight < 0:
            raise ValueError(f"--l1_weight must be >= 0, got {self.l1_weight}.")


def psnr(sample: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB, for images in [-1, 1] (peak-to-peak 2)."""
    mse = (sample.float() - target.float()).pow(2).mean(dim=(1, 2, 3)).clamp(min=1e-10)  # (B,)
    return 10 * torch.log10(4.0 / mse)


def build_model(cfg: AutoencoderTrainConfig) -> ConceptAutoencoder:
    return ConceptAutoencoder(
        image_size=cfg.resolution,
        code_dim=cfg.code_dim,
        encoder_block_out_channels=tuple(cfg.encoder_block_out_channels),
        decoder_block_out_channels=tuple(cfg.decoder_block_out_channels),
        layers_per_block=cfg.layers_per_block,
        norm_num_groups=cfg.norm_num_groups,
    )


def make_evaluator(cfg: AutoencoderTrainConfig, accelerator, model):
    """Mean per-image PSNR (dB) and MSE of reconstructions of the validation split."""
    data = load_split(cfg, cfg.validation_split, cfg.max_eval_samples, caption_column=None)
    images = TensorImageTextDataset.from_dataset(data, cfg.resolution, cfg.image_column, None).images  # uint8 (N, 3, R, R)
    unwrapped = accelerator.unwrap_model(model)

    @torch.no_grad()
    def evaluate(state) -> dict:
        unwrapped.eval()
        scores, errors = [], []
        for start in range(0, len(images), 256):
            target = images[start : start + 256].float().div(127.5).sub(1.0).to(accelerator.device)
            sample = unwrapped(target).sample
            scores.append(psnr(sample, target).cpu())
            errors.append((sample - target).pow(2).mean(dim=(1, 2, 3)).cpu())
        unwrapped.train()
        return {"psnr": torch.cat(scores).mean().item(), "mse": torch.cat(errors).mean().item()}

    return evaluate


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_args(AutoencoderTrainConfig, argv, ShapesDataArguments, EmojiDataArguments)
    accelerator = build_accelerator(cfg)

    train_data = load_split(cfg, "train", cfg.max_train_samples, caption_column=None)
    model = build_model(cfg)
    dataloader = build_train_dataloader(cfg, train_data, caption_column=None)
    set_memory_format(cfg, model)
    optimizer, lr_scheduler = build_optimizer(cfg, model.parameters())
    model, optimizer, dataloader, lr_scheduler = accelerator.prepare(model, optimizer, dataloader, lr_scheduler)

    def compute_loss(batch):
        target = batch["pixel_values"]  # (B, 3, R, R) in [-1, 1]
        sample = model(target).sample
        return reconstruction_loss(sample, target, cfg.l1_weight), {}

    evaluate = make_evaluator(cfg, accelerator, model)
    if accelerator.is_main_process:
        accelerator.init_trackers("train_autoencoder", config=tracker_config(cfg))
    state = train_loop(accelerator, cfg, {"model": model}, optimizer, lr_scheduler, dataloader, compute_loss, evaluate=evaluate)
    result = run_result(state)
    if accelerator.is_main_process:
        with final_save(cfg.output_dir) as folder:  # the model already there stays whole if saving fails
            accelerator.unwrap_model(model).save_pretrained(folder)
        write_eval_results(cfg, result)
        write_card_and_push(cfg, argv, __file__)  # README.md model card; --push_to_hub uploads
    end_training(accelerator, cfg)
    return result


if __name__ == "__main__":
    run_script(main)

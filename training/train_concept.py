"""Train the concept encoders (text and image towers sharing one 512-d space).

    # CLIP-style contrastive training on the built-in Shapes world
    accelerate launch training/train_concept.py --dataset_name shapes --output_dir outputs/concept-shapes

    # the simpler route: freeze an image encoder, train the text tower + a 2-layer head to predict its codes
    accelerate launch training/train_concept.py --objective regress \
        --image_encoder_path outputs/concept-shapes --output_dir outputs/concept-regress

The output folder holds the `ConceptModel` (config.json + model.safetensors) and its
tokenizer, so `AutoModel.from_pretrained(dir)` and `AutoTokenizer.from_pretrained(dir)`
both work, plus `eval_results.json`.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from hf_textimg.concept import ConceptConfig, ConceptModel, ConceptVisionModel, regression_loss
from hf_textimg.evaluation.concept_eval import emoji_style_zero_shot, hard_negative_accuracy, retrieval_recall, shapes_zero_shot
from hf_textimg.hub import write_card_and_push
from hf_textimg.data.emoji_arguments import EmojiDataArguments
from hf_textimg.shapes import ShapesDataArguments, hard_negative_caption
from hf_textimg.tokenization import tokenize_captions
from hf_textimg.data.streaming import caption_sample
from hf_textimg.training import (
    TensorImageTextDataset,
    TrainConfig,
    build_accelerator,
    build_optimizer,
    build_train_dataloader,
    end_training,
    load_or_train_tokenizer,
    load_split,
    parse_args,
    train_loop,
    run_result,
    tracker_config,
    write_eval_results,
)
from hf_textimg.training.checkpointing import final_save
from hf_textimg.training.entry import run_script


@dataclass
class ConceptTrainConfig(TrainConfig):
    objective: Literal["contrastive", "regress"] = field(
        default="contrastive", metadata={"help": "contrastive: train both towers (CLIP); regress: frozen image encoder, text tower predicts its codes."}
    )
    text_encoder_type: Literal["transformer", "conv"] = field(default="transformer", metadata={"help": "Text tower architecture."})
    # The text tower's size; the same defaults as train_diffusion.py's new tower (and the shipped model's recipe).
    text_hidden_size: int = field(default=128, metadata={"help": "Width of the text tower's token states."})
    text_num_layers: int = 2
    text_num_heads: int = 4
    vision_base_channels: int = 32
    vision_num_stages: int = 3
    vision_layers_per_stage: int = 1
    projection_dim: int = 512
    image_encoder_path: str | None = field(
        default=None, metadata={"help": "regress: folder of a trained ConceptModel or ConceptVisionModel whose image tower is frozen."}
    )
    regress_loss: Literal["cosine", "mse"] = field(default="cosine", metadata={"help": "regress: loss between predicted and frozen codes."})
    hard_negatives: bool = field(
        default=False,
        metadata={"help": "contrastive, Shapes: add each caption with one fact changed (objects swapped, another relation, count "
                  "or position) as an extra wrong answer for its image (NegCLIP), so word order and counts matter."},
    )

    def validate(self) -> None:
        super().validate()
        if self.objective == "regress" and not self.image_encoder_path:
            raise ValueError("--objective regress needs --image_encoder_path (a trained ConceptModel or ConceptVisionModel folder).")
        if self.hard_negatives and (self.objective != "contrastive" or not self.uses_shapes):
            raise ValueError("--hard_negatives rewrites Shapes captions for the contrastive loss; use it with --dataset_name shapes "
                             "and --objective contrastive.")
        if self.prompt_normalization is not None:
            raise ValueError("--prompt_normalization is stored by the pipelines that train_decoder.py / train_diffusion.py save; a concept "
                             "model has no pipeline to carry it. Train it on plain captions and pass the flag to the pipeline script.")


def hard_negative_inputs(captions: list[str], tokenizer, max_length: int, seed: int, device) -> dict:
    """Tokenized hard negatives of a batch's captions (`hard_negative_caption`), as ConceptModel.forward's
    `negative_input_ids` / `negative_attention_mask`. The draw is seeded by the captions themselves, so a resumed
    run makes the same negatives."""
    rng = np.random.default_rng([seed, zlib.crc32("\n".join(captions).encode())])
    negatives = [n for n in (hard_negative_caption(c, rng) for c in captions) if n is not None]
    if not negatives:
        return {}
    batch = tokenize_captions(tokenizer, negatives, max_length).to(device)
    return {"negative_input_ids": batch["input_ids"], "negative_attention_mask": batch["attention_mask"]}


def load_frozen_vision_model(path: str) -> ConceptVisionModel:
    """The image tower of a saved ConceptModel, or a saved ConceptVisionModel (its
    `base_model_prefix` lets it load its half of a dual checkpoint)."""
    from transformers import AutoConfig

    model_type = AutoConfig.from_pretrained(path).model_type
    if model_type not in ("concept", "concept_vision_model"):
        raise ValueError(f"--image_encoder_path {path!r} holds a {model_type!r} model; expected a concept or concept_vision_model folder.")
    return ConceptVisionModel.from_pretrained(path).requires_grad_(False).eval()


def build_model(cfg: ConceptTrainConfig, tokenizer) -> ConceptModel:
    text_config = dict(
        vocab_size=len(tokenizer),
        hidden_size=cfg.text_hidden_size,
        num_layers=cfg.text_num_layers,
        num_heads=cfg.text_num_heads,
        intermediate_size=4 * cfg.text_hidden_size,
        max_position_embeddings=cfg.max_length,
        encoder_type=cfg.text_encoder_type,
        head_layers=2 if cfg.objective == "regress" else 1,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    if cfg.objective == "regress":
        vision = load_frozen_vision_model(cfg.image_encoder_path)
        if vision.config.image_size != cfg.resolution:
            raise ValueError(f"The frozen image encoder takes {vision.config.image_size}px images but --resolution is {cfg.resolution}.")
        # The text tower's projection_dim follows the frozen encoder's code size.
        config = ConceptConfig(text_config=text_config, vision_config=vision.config.to_dict(), projection_dim=vision.config.projection_dim)
        model = ConceptModel(config)
        model.vision_model.load_state_dict(vision.state_dict())
        model.vision_model.requires_grad_(False).eval()
        model.logit_scale.requires_grad_(False)
        return model
    vision_config = dict(
        image_size=cfg.resolution,
        base_channels=cfg.vision_base_channels,
        num_stages=cfg.vision_num_stages,
        layers_per_stage=cfg.vision_layers_per_stage,
        projection_dim=cfg.projection_dim,
        norm_num_groups=min(32, cfg.vision_base_channels // 2),
    )
    return ConceptModel(ConceptConfig(text_config=text_config, vision_config=vision_config, projection_dim=cfg.projection_dim))


def make_evaluator(cfg: ConceptTrainConfig, accelerator, model, tokenizer):
    """Metrics on the validation split: zero-shot colour/shape accuracy for Shapes (and its
    held-out pairs), text<->image recall@1/5 for any other captioned set, and for the Emoji set
    in several styles the zero-shot style accuracy (`emoji_style_zero_shot`)."""
    eval_sets = {}
    splits = [(cfg.validation_split, "")] + ([("heldout", "heldout_")] if cfg.uses_shapes else [])
    for split, prefix in splits:
        data = load_split(cfg, split)
        if cfg.uses_shapes and split == cfg.validation_split:
            every_kind = data  # for the word-order / counting test below
        if cfg.uses_shapes:
            data = data.filter(lambda kind: kind == "single", input_columns="kind")
        if cfg.max_eval_samples:
            data = data.select(range(min(cfg.max_eval_samples, len(data))))
        tensors = TensorImageTextDataset.from_dataset(data, cfg.resolution, cfg.image_column, cfg.caption_column)
        labels = [(o[0]["color"], o[0]["shape"]) for o in data["objects"]] if cfg.uses_shapes else None
        eval_sets[prefix] = (tensors.images.float().div(127.5).sub(1.0), list(data[cfg.caption_column]), labels)
        if cfg.uses_emoji and len(cfg.dataset_args.emoji_styles) > 1:
            emoji_style_set = (eval_sets[prefix][0], list(data["name"]), list(data["style"]))

    if cfg.uses_shapes:
        data = every_kind.select(range(min(cfg.max_eval_samples or len(every_kind), len(every_kind))))
        tensors = TensorImageTextDataset.from_dataset(data, cfg.resolution, cfg.image_column, cfg.caption_column)
        hard_negative_set = (tensors.images.float().div(127.5).sub(1.0), list(data[cfg.caption_column]), list(data["kind"]))

    unwrapped = accelerator.unwrap_model(model)

    @torch.no_grad()
    def embed_text(captions: list[str]) -> torch.Tensor:
        batch = tokenize_captions(tokenizer, captions, cfg.max_length).to(accelerator.device)
        return unwrapped.get_text_features(batch["input_ids"], batch["attention_mask"]).pooler_output.float().cpu()

    @torch.no_grad()
    def embed_images(pixel_values: torch.Tensor) -> torch.Tensor:
        return unwrapped.get_image_features(pixel_values.to(accelerator.device)).pooler_output.float().cpu()

    def evaluate(state) -> dict:
        unwrapped.eval()
        metrics = {}
        for prefix, (pixels, captions, labels) in eval_sets.items():
            if labels is not None:
                metrics.update(shapes_zero_shot(embed_text, embed_images, pixels, labels, prefix=prefix))
            else:
                texts = torch.cat([embed_text(captions[i : i + 512]) for i in range(0, len(captions), 512)])
                images = torch.cat([embed_images(pixels[i : i + 512]) for i in range(0, len(pixels), 512)])
                metrics.update({prefix + k: v for k, v in retrieval_recall(texts, images).items()})
        if cfg.uses_shapes:
            metrics.update(hard_negative_accuracy(embed_text, embed_images, *hard_negative_set, seed=cfg.seed))
        if cfg.uses_emoji and len(cfg.dataset_args.emoji_styles) > 1:
            metrics.update(emoji_style_zero_shot(embed_text, embed_images, *emoji_style_set, style_names=cfg.dataset_args.emoji_styles))
        unwrapped.train()
        if cfg.objective == "regress":
            unwrapped.vision_model.eval()
        return metrics

    return evaluate


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_args(ConceptTrainConfig, argv, ShapesDataArguments, EmojiDataArguments)
    accelerator = build_accelerator(cfg)

    train_data = load_split(cfg, "train", cfg.max_train_samples)
    tokenizer = load_or_train_tokenizer(cfg, caption_sample(train_data, cfg.caption_column), accelerator)
    model = build_model(cfg, tokenizer)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    dataloader = build_train_dataloader(cfg, train_data, tokenizer)
    optimizer, lr_scheduler = build_optimizer(cfg, model.parameters())
    model, optimizer, dataloader, lr_scheduler = accelerator.prepare(model, optimizer, dataloader, lr_scheduler)
    unwrapped = accelerator.unwrap_model(model)

    def compute_loss(batch):
        if cfg.objective == "contrastive":
            negatives = hard_negative_inputs(batch["text"], tokenizer, cfg.max_length, cfg.seed, accelerator.device) if cfg.hard_negatives else {}
            out = model(batch["input_ids"], batch["attention_mask"], batch["pixel_values"], return_loss=True, **negatives)
            return out.loss, {"logit_scale": out.logit_scale.item()}
        with torch.no_grad():
            target = unwrapped.get_image_features(batch["pixel_values"]).pooler_output  # (B, P), frozen
        pred = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).text_embeds
        return regression_loss(pred, target, kind=cfg.regress_loss), {}

    evaluate = make_evaluator(cfg, accelerator, model, tokenizer)
    if accelerator.is_main_process:
        accelerator.init_trackers("train_concept", config=tracker_config(cfg))
    state = train_loop(
        accelerator,
        cfg,
        {"model": model},
        optimizer,
        lr_scheduler,
        dataloader,
        compute_loss,
        after_optimizer_step=lambda state: unwrapped.clamp_logit_scale_(),
        evaluate=evaluate,
    )
    result = run_result(state)
    if accelerator.is_main_process:
        with final_save(cfg.output_dir) as folder:  # the model already there stays whole if saving fails
            unwrapped.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
        write_eval_results(cfg, result)
        write_card_and_push(cfg, argv, __file__)  # README.md model card; --push_to_hub uploads
    end_training(accelerator, cfg)
    return result


if __name__ == "__main__":
    run_script(main)

"""Evaluation of a concept space: retrieval recall and zero-shot attribute accuracy.

- `retrieval_recall`: text->image and image->text recall@k over paired embeddings
  (used on the Emoji validation split).
- `shapes_zero_shot`: classify each single-object Shapes image by the nearest caption
  embedding among all colour x shape captions ("a red circle", ... 32 of them, the
  held-out pairs included), and report colour, shape and pair accuracy.
- `hard_negative_accuracy`: how often an image is closer to its own caption than to the
  same words with one fact changed (ARO / Winoground-style word-order and binding test).
- `emoji_style_zero_shot`: classify each Emoji image's style by the nearest of its name with
  each style word ("crab, fluent style"), and by the bare "{style} style" captions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..shapes.hard_negatives import hard_negative_caption
from ..shapes.language import ObjectQuery, ShapesQuery, caption_query
from ..shapes.vocab import PALETTE, SHAPES


def shapes_class_prompts() -> tuple[list[str], list[tuple[str, str]]]:
    """All colour x shape captions, e.g. "an orange circle", and their (colour, shape) labels."""
    labels = [(color, shape) for color in PALETTE for shape in SHAPES]
    # The world's own canonical caption, so articles and wording match the training captions.
    return [caption_query(ShapesQuery("single", (ObjectQuery(c, s),))) for c, s in labels], labels


@torch.no_grad()
def retrieval_recall(text_embeds: torch.Tensor, image_embeds: torch.Tensor, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """Recall@k for row-aligned pairs: text i belongs with image i. Embeddings (N, D), unit norm.

    Returns ``text_to_image_recall@k`` (is image i among text i's k nearest images) and
    ``image_to_text_recall@k``.
    """
    if text_embeds.shape != image_embeds.shape:
        raise ValueError(f"Paired embeddings must have the same shape, got {tuple(text_embeds.shape)} and {tuple(image_embeds.shape)}.")
    sims = text_embeds.float() @ image_embeds.float().T  # (N texts, N images)
    target = torch.arange(len(sims))
    out = {}
    for k in ks:
        k_eff = min(k, len(sims))
        out[f"text_to_image_recall@{k}"] = (sims.topk(k_eff, dim=1).indices == target[:, None]).any(1).float().mean().item()
        out[f"image_to_text_recall@{k}"] = (sims.T.topk(k_eff, dim=1).indices == target[:, None]).any(1).float().mean().item()
    return out


@torch.no_grad()
def shapes_zero_shot(
    embed_text: Callable[[list[str]], torch.Tensor],
    embed_images: Callable[[torch.Tensor], torch.Tensor],
    pixel_values: torch.Tensor,
    labels: Sequence[tuple[str, str]],
    prefix: str = "",
    batch_size: int = 512,
) -> dict[str, float]:
    """Zero-shot colour/shape accuracy of single-object images.

    Args:
        embed_text: captions -> (N, D) unit-norm embeddings.
        embed_images: (B, 3, R, R) in [-1, 1] -> (B, D) unit-norm embeddings.
        pixel_values: (N, 3, R, R) single-object images.
        labels: the (colour, shape) of each image.
        prefix: prepended to the metric names (e.g. "heldout_").
    """
    prompts, classes = shapes_class_prompts()
    class_embeds = embed_text(prompts)  # (32, D)
    preds = []
    for start in range(0, len(pixel_values), batch_size):
        image_embeds = embed_images(pixel_values[start : start + batch_size])
        preds.extend((image_embeds.float() @ class_embeds.float().T).argmax(1).tolist())
    predicted = [classes[p] for p in preds]
    n = len(labels)
    color = sum(p[0] == t[0] for p, t in zip(predicted, labels)) / n
    shape = sum(p[1] == t[1] for p, t in zip(predicted, labels)) / n
    both = sum(p == tuple(t) for p, t in zip(predicted, labels)) / n
    return {f"{prefix}color_accuracy": color, f"{prefix}shape_accuracy": shape, f"{prefix}pair_accuracy": both}


def hard_negative_accuracy(
    embed_text: Callable[[list[str]], torch.Tensor],
    embed_images: Callable[[torch.Tensor], torch.Tensor],
    pixel_values: torch.Tensor,
    captions: Sequence[str],
    kinds: Sequence[str],
    seed: int = 0,
    batch_size: int = 512,
) -> dict[str, float]:
    """Fraction of images whose concept is closer to their caption than to `hard_negative_caption(caption)` (objects
    swapped, another relation / count / position, colours bound to the other shapes), overall and per scene kind
    (`hard_negative_accuracy_<kind>`). 0.5 is a model that reads the caption as a bag of words."""
    rng = np.random.default_rng(seed)
    rows = [(i, neg) for i, caption in enumerate(captions) if (neg := hard_negative_caption(caption, rng)) is not None]
    if not rows:
        raise ValueError("No caption has a hard negative; hard_negative_accuracy needs Shapes captions.")
    index = torch.tensor([i for i, _ in rows])
    correct = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        images = embed_images(pixel_values[index[start : start + batch_size]]).float()
        positive = (images * embed_text([captions[i] for i, _ in chunk]).float()).sum(-1)
        negative = (images * embed_text([neg for _, neg in chunk]).float()).sum(-1)
        correct.extend((positive > negative).tolist())
    metrics = {"hard_negative_accuracy": sum(correct) / len(correct)}
    for kind in sorted({kinds[i] for i, _ in rows}):
        hits = [ok for (i, _), ok in zip(rows, correct) if kinds[i] == kind]
        metrics[f"hard_negative_accuracy_{kind}"] = sum(hits) / len(hits)
    return metrics


@torch.no_grad()
def emoji_style_zero_shot(
    embed_text: Callable[[list[str]], torch.Tensor],
    embed_images: Callable[[torch.Tensor], torch.Tensor],
    pixel_values: torch.Tensor,
    names: Sequence[str],
    styles: Sequence[str],
    style_names: Sequence[str],
    batch_size: int = 512,
) -> dict[str, float]:
    """Zero-shot style accuracy of Emoji images (each known by its name and style), two ways:

    - `style_accuracy`: the nearest of the captions "{name}, {s} style" over the styles `s` in
      `style_names` (the content is given; only the style word differs);
    - `style_only_accuracy`: the nearest of the bare captions "{s} style".
    Chance is 1 / len(style_names).
    """
    style_names = list(style_names)
    bare = embed_text([f"{s} style" for s in style_names]).float()  # (S, D)
    unique_names = list(dict.fromkeys(names))  # each name's captions are embedded once, not once per image
    captions = [f"{n}, {s} style" for n in unique_names for s in style_names]
    text = torch.cat([embed_text(captions[i : i + batch_size]).float() for i in range(0, len(captions), batch_size)])
    text = text.view(len(unique_names), len(style_names), -1)  # (names, S, D)
    row = {n: i for i, n in enumerate(unique_names)}
    with_name, only = [], []
    for start in range(0, len(pixel_values), batch_size):
        images = embed_images(pixel_values[start : start + batch_size]).float()  # (B, D)
        per_image = text[[row[n] for n in names[start : start + batch_size]]]  # (B, S, D)
        with_name += (per_image @ images[:, :, None]).squeeze(-1).argmax(1).tolist()  # (B, S) -> (B,)
        only += (images @ bare.T).argmax(1).tolist()
    target = [style_names.index(s) for s in styles]
    return {
        "style_accuracy": float(np.mean([p == t for p, t in zip(with_name, target)])),
        "style_only_accuracy": float(np.mean([p == t for p, t in zip(only, target)])),
    }

"""Exploratory (2026-12-05, not part of the package): can "the same emoji in another artist's hand" be learnt from pairs?

A translator is trained on pairs of one emoji drawn in two styles (train split, the noto development rows of
`--emoji_dev_style noto` held out, so heldout_style's and dev_style's noto images are never targets): input the source
drawing, output the target style's drawing of the same emoji. It is a diffusers `UNet2DModel` used as a one-pass
image-to-image network (timestep fixed at 0; its class embedding picks the (source style, target style) pair).
Scored on the development split only (dev_style: noto drawings of train emoji held out of training), with the
benchmark's retrieval: the translation of the emoji's real twemoji / fluent / openmoji drawing (an oracle source), and
of a one-shot model's drawing of "name, twemoji style" (the text-to-image cascade), against the `other_styles`
baseline (no translation).

    python docs/experiments/2026-12-05-style-translator.py --minutes 20 --out outputs/style-translator \
        --oneshot outputs/oneshot-dev-b
"""

from __future__ import annotations

import argparse
import json
import random
import time

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DiffusionPipeline, UNet2DModel

import hf_textimg  # noqa: F401
from hf_textimg.data.emoji import build_emoji_dataset, drop_dev_style_rows, with_dev_style_split
from hf_textimg.evaluation.emoji_eval import EmojiReferences, emoji_prompts, score_images, to_float_images

STYLES = ["noto", "twemoji", "openmoji", "fluent"]


def pair_label(source: str, target: str) -> int:
    return STYLES.index(source) * len(STYLES) + STYLES.index(target)


def to_tensor(images: np.ndarray) -> torch.Tensor:  # (N, R, R, 3) uint8 or [0, 1] floats -> (N, 3, R, R) in [-1, 1]
    x = torch.from_numpy(to_float_images(images)).permute(0, 3, 1, 2)
    return x * 2 - 1


def translate(model, images: np.ndarray, source: str, target: str) -> np.ndarray:
    with torch.no_grad():
        x = to_tensor(images)
        labels = torch.full((len(x),), pair_label(source, target))
        out = model(x, torch.zeros(len(x), dtype=torch.long), class_labels=labels).sample.clamp(-1, 1)
    return ((out + 1) / 2).permute(0, 2, 3, 1).numpy()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=20)
    parser.add_argument("--out", default="outputs/style-translator")
    parser.add_argument("--oneshot", default=None, help="a DecoderPipeline trained with --emoji_dev_style noto")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--no_attention", action="store_true", help="plain residual blocks only (several times cheaper a step)")
    args = parser.parse_args()
    torch.manual_seed(0)
    random.seed(0)

    data = build_emoji_dataset(32, styles=STYLES)
    train = drop_dev_style_rows(data["train"], "noto")
    by_sequence: dict[str, dict[str, np.ndarray]] = {}
    for image, sequence, style in zip(train["image"], train["sequence"], train["style"]):
        by_sequence.setdefault(sequence, {})[style] = np.asarray(image.convert("RGB"))
    pairs = [(seq, s, t) for seq, drawn in by_sequence.items() for s in drawn for t in drawn if s != t]
    print(f"{len(pairs)} (emoji, source, target) pairs from {len(by_sequence)} emoji")

    levels = len(args.widths)
    down = ["DownBlock2D"] + ["DownBlock2D" if args.no_attention else "AttnDownBlock2D"] * (levels - 1)
    up = ["UpBlock2D" if args.no_attention else "AttnUpBlock2D"] * (levels - 1) + ["UpBlock2D"]
    model = UNet2DModel(sample_size=32, in_channels=3, out_channels=3, block_out_channels=tuple(args.widths), layers_per_block=1,
                        down_block_types=tuple(down), up_block_types=tuple(up), num_class_embeds=len(STYLES) ** 2,
                        norm_num_groups=min(32, min(args.widths)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    start, step, losses = time.time(), 0, []
    while time.time() - start < args.minutes * 60:
        batch = random.sample(pairs, args.batch_size)
        x = to_tensor(np.stack([by_sequence[q][s] for q, s, _ in batch]))
        y = to_tensor(np.stack([by_sequence[q][t] for q, _, t in batch]))
        labels = torch.tensor([pair_label(s, t) for _, s, t in batch])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x, torch.zeros(len(x), dtype=torch.long), class_labels=labels).sample
        loss = F.mse_loss(out.float(), y) + 0.5 * F.l1_loss(out.float(), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        step += 1
        if step % 250 == 0:
            print(f"step {step} minutes {(time.time() - start) / 60:.1f} loss {np.mean(losses[-250:]):.4f}", flush=True)
    model.eval()
    model.save_pretrained(args.out)

    # ---- development split only
    scored = with_dev_style_split(data, "noto")
    refs = EmojiReferences.from_dataset(scored)
    prompts = emoji_prompts(scored, "dev_style", ["noto"], None)
    results = {"steps": step, "minutes": round((time.time() - start) / 60, 1), "n": len(prompts)}

    def score(name, images, keep):
        metrics, _, _ = score_images(refs, [prompts[i] for i in keep], images)
        results[name] = {"n": len(keep), **{k: round(v, 3) for k, v in metrics.items() if v is not None}}
        print(name, results[name], flush=True)

    for source in ("twemoji", "fluent", "openmoji"):
        keep = [i for i, p in enumerate(prompts) if refs.find(source, p.sequence) is not None]
        drawn = np.stack([refs.images[source][refs.index(source, prompts[i].sequence)] for i in keep])
        score(f"real {source}, untranslated", to_float_images(drawn), keep)
        score(f"real {source} -> noto", translate(model, drawn, source, "noto"), keep)
    if args.oneshot:
        pipe = DiffusionPipeline.from_pretrained(args.oneshot)
        pipe.set_progress_bar_config(disable=True)
        keep = list(range(len(prompts)))
        drawn = pipe([f"{prompts[i].name}, twemoji style" for i in keep], output_type="np").images
        score("one-shot 'name, twemoji style', untranslated", drawn, keep)
        score("one-shot 'name, twemoji style' -> noto", translate(model, drawn, "twemoji", "noto"), keep)
        noto = pipe([prompts[i].prompt for i in keep], output_type="np").images
        score("one-shot 'name, noto style' (as scored so far)", noto, keep)
    with open(f"{args.out}/dev_style_results.json", "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()

"""Does the Emoji benchmark's fixed feature rank the right reference first, and the floors last?

    python benchmarks/emoji_eval_sanity.py --size 32 --num 500

No model is involved: for N emoji of one asked style (default noto, drawn from every split in
the benchmark's own prompt order), the "generated" image is the reference itself, a degraded copy
(blur, shift, noise, resampling), another artist's drawing of the same emoji (the other styles),
or a floor (another emoji, the mean image, noise). Each is scored exactly as `hf-textimg evaluate
--benchmark emoji` scores a generated image. Prints a table and one JSON line. Needs the Emoji
set built with all four styles (docs/emoji.md).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from PIL import Image
from scipy import ndimage

from hf_textimg.data.emoji import build_emoji_dataset
from hf_textimg.evaluation.emoji_eval import SPEC_PROMPT_SETS, EmojiReferences, baseline_images, emoji_prompts, score_images
from hf_textimg.evaluation.image_features import to_float_images

STYLES = ("noto", "twemoji", "openmoji", "fluent")


def degraded(reference: np.ndarray, size: int, rng) -> dict[str, np.ndarray]:
    """Copies of the references (N, R, R, 3) uint8, degraded in ways a good generator's output might differ."""
    x = to_float_images(reference)
    px = size / 32  # degradations are given in pixels at 32 px
    resampled = np.stack([np.asarray(Image.fromarray(im).resize((size // 2,) * 2, Image.Resampling.BOX).resize((size,) * 2, Image.Resampling.BICUBIC))
                          for im in reference])
    out = {f"blur sigma {s:g} px": ndimage.gaussian_filter(x, (0, s * px, s * px, 0)) for s in (0.5, 1, 2, 3)}
    out.update({
        "shift 1 px": np.roll(x, round(px), axis=2),
        "shift 2 px": np.roll(x, round(2 * px), axis=2),
        "noise sd 0.05": np.clip(x + rng.normal(0, 0.05, x.shape), 0, 1),
        "half resolution, upsampled": to_float_images(resampled),
    })
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--num", type=int, default=500, help="emoji scored per row")
    parser.add_argument("--style", default="noto", choices=STYLES, help="the asked style")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    data = build_emoji_dataset(args.size, styles=STYLES)
    refs = EmojiReferences.from_dataset(data)
    drawn = {s: set(refs.sequences[s]) for s in refs.sequences}
    pool = [p for name in SPEC_PROMPT_SETS for p in emoji_prompts(data, name, [args.style])]
    pool = [p for p in pool if all(p.sequence in drawn[s] for s in STYLES if s in drawn)]  # drawn in every style
    prompts = pool[: args.num]
    own = refs.images[args.style][[refs.index(args.style, p.sequence) for p in prompts]]
    rows = {"reference": baseline_images(refs, prompts)["reference"]}
    rows.update(degraded(own, args.size, np.random.default_rng(0)))
    rows.update({f"{s} drawing of the emoji": to_float_images(refs.images[s][[refs.index(s, p.sequence) for p in prompts]])
                 for s in STYLES if s != args.style and s in refs.images})
    rows.update({k: v for k, v in baseline_images(refs, prompts).items() if k in ("wrong_emoji", "mean_image", "noise")})
    results = {name: score_images(refs, prompts, images)[0] for name, images in rows.items()}
    print(f"Emoji benchmark feature, {len(prompts)} {args.style} emoji at {args.size}px, ranked among {len(refs.sequences[args.style])} {args.style} references")
    print(f"{'image scored':<30}{'R@1':>7}{'R@5':>7}{'R@10':>7}{'grp@1':>8}{'style@1':>9}")
    for name, r in results.items():
        print(f"{name:<30}{r['recall@1']:>7.3f}{r['recall@5']:>7.3f}{r['recall@10']:>7.3f}{r['group_recall@1']:>8.3f}{r['style@1']:>9.3f}")
    out = {"size": args.size, "style": args.style, "num": len(prompts), "results": results, "seconds": round(time.perf_counter() - start, 1)}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()

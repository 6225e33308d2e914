"""The Emoji benchmark: does a generated image show the emoji (and style) its prompt asks for?

Each prompt is the Emoji set's own caption, "{name}, {style} style" (or the name alone for a model
trained with `--emoji_caption_style never`). Its generated image is ranked among ALL reference
images of the asked style (every split, ~3,660 for noto) by the distance between fixed,
weight-free image features (`image_features.colour_layout_features`: colour layout, colour
histogram, edge orientations), so no model of this package, and nothing the generator could have
been trained against, does the grading. Reported per prompt set:

- `recall@k`: the asked emoji's reference is among the k nearest (1, 5, 10);
- `group_recall@k`: some reference of the asked emoji's variant group (same base: every skin tone
  and gender of "cook") is among the k nearest, counting each group once;
- `style@1`: of the asked emoji's drawings in every style of the data set, the nearest is the asked
  style's (chance: 1 / the number of styles drawing it). Retrieval within one style partly forgives
  the wrong style (Twemoji's drawing of an emoji retrieves Noto's drawing of it at recall@1 0.27),
  so this says whether the style was drawn too; None when the data set holds one style;
- baselines computed on the same prompts without any model: ceilings `reference` (the reference
  itself) and `blurred` (Gaussian blur, sigma = 1 px at 32 px); floors `wrong_emoji` (the reference of
  the next prompt's emoji), `mean_image` (the mean of the style's references) and `noise`; and
  `other_styles`, the right emoji in the wrong style: the pixel mean of the asked emoji's drawings in
  every other style (only where each prompt's emoji has one, as in `heldout_style`). A model that
  composes style and content should beat it on `heldout_style`; one that draws the emoji as the other
  artists did scores about it.

Prompt sets (`emoji_prompts`, deterministic: ordered by a hash of style and sequence):
`seen` (train rows: emoji and style seen in training), `heldout_style` (noto images of emoji the
model saw only in other styles), `heldout_variants` (skin-tone variants never seen), `validation`
(unseen emoji: for choosing settings, not for claims), and, for a model trained with
`--emoji_dev_style STYLE`, `dev_style` (that style's images of other emoji, held out of its training:
heldout_style's question asked on the development side; the data passed through
`hf_textimg.data.emoji.with_dev_style_split`, whose train split then excludes them from `seen`).

Distribution (optional, `distribution_samples` > 0): KID, FID and precision / recall / density /
coverage of the generated `seen` images against their references, on the same features; NOT
comparable to published FID, which uses Inception features. Beside it: another half of the real
references (the finite-sample ceiling), blurred references, the mean image and noise.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ..data.emoji_sources import STYLES
from .distribution import distribution_metrics
from .image_features import colour_layout_features, to_float_images

__all__ = ["EmojiPrompt", "EmojiReferences", "EmojiReport", "PROMPT_SETS", "SPEC_PROMPT_SETS", "emoji_prompts", "evaluate_emoji", "retrieval_ranks"]

PROMPT_SETS = ("seen", "heldout_style", "heldout_variants", "validation", "dev_style")
SPLIT_OF_SET = {"seen": "train", "heldout_style": "heldout_style", "heldout_variants": "heldout_variants", "validation": "validation",
                "dev_style": "dev_style"}
SPEC_PROMPT_SETS = PROMPT_SETS[:4]  # the spec's splits; dev_style exists only in with_dev_style_split's data
KS = (1, 5, 10)
BASELINES = ("reference", "blurred", "wrong_emoji", "mean_image", "noise", "other_styles")


@dataclass(frozen=True)
class EmojiPrompt:
    prompt: str  # what the generator is asked
    name: str
    style: str
    sequence: str
    base: str


def _order_key(style: str, sequence: str) -> str:
    return hashlib.sha256(f"emoji-eval:{style}:{sequence}".encode()).hexdigest()


def emoji_prompts(data, prompt_set: str, styles: Sequence[str] = ("noto",), n: int | None = None, caption_style: str = "always") -> list[EmojiPrompt]:
    """The first `n` prompts of a set, in a fixed hash order, of rows whose style is in `styles`.

    `data` is the Emoji `DatasetDict`; `caption_style` "never" asks by name alone. The `dev_style` set holds
    one style, whichever was held out, and takes its rows whatever `styles` says.
    """
    if prompt_set not in SPLIT_OF_SET:
        raise ValueError(f"prompt_set must be one of {PROMPT_SETS}, got {prompt_set!r}")
    if SPLIT_OF_SET[prompt_set] not in data:
        raise ValueError(f"The {prompt_set!r} prompt set needs the data set's {SPLIT_OF_SET[prompt_set]!r} split: pass the data through "
                         "hf_textimg.data.emoji.with_dev_style_split(data, style) with the style the model was trained without.")
    split = data[SPLIT_OF_SET[prompt_set]]
    if prompt_set == "dev_style":
        styles = split.unique("style")
    columns = [split[c] for c in ("text", "name", "style", "sequence", "base")]
    prompts = [
        EmojiPrompt(text if caption_style != "never" else name, name, style, seq, base)
        for text, name, style, seq, base in zip(*columns)
        if style in styles
    ]
    prompts.sort(key=lambda p: _order_key(p.style, p.sequence))
    return prompts[:n] if n is not None else prompts


@dataclass
class EmojiReferences:
    """Every reference image of some styles with its features: the gallery a generated image is ranked in."""

    images: dict[str, np.ndarray]  # style -> (N, R, R, 3) uint8
    features: dict[str, np.ndarray]  # style -> (N, D)
    sequences: dict[str, np.ndarray]  # style -> (N,) str
    bases: dict[str, np.ndarray]

    @classmethod
    def from_dataset(cls, data, styles: Sequence[str] | None = None) -> EmojiReferences:
        """References of `styles` (default: every style in `data`)."""
        images, features, sequences, bases = {}, {}, {}, {}
        if styles is None:
            present = {s for ds in data.values() for s in ds.unique("style")}
            styles = [s for s in STYLES if s in present]
        for style in styles:
            picked = [(ds, [i for i, s in enumerate(ds["style"]) if s == style]) for ds in data.values()]
            rows = [ds.select(idx) for ds, idx in picked if idx]
            if not rows:
                raise ValueError(f"The Emoji data set has no {style!r} images; build it with that style (--styles {style}).")
            images[style] = np.stack([np.asarray(im.convert("RGB")) for r in rows for im in r["image"]])
            features[style] = colour_layout_features(images[style])
            sequences[style] = np.array([s for r in rows for s in r["sequence"]])
            bases[style] = np.array([b for r in rows for b in r["base"]])
        return cls(images, features, sequences, bases)

    def nearest_style(self, features: np.ndarray, sequences: Sequence[str]) -> np.ndarray:
        """For each feature row, the style whose drawing of `sequences[i]` (that emoji) is nearest."""
        found = np.empty(len(features), dtype=object)
        for i, (f, seq) in enumerate(zip(features.astype(np.float64), sequences)):
            best = np.inf
            for style in sorted(self.features):
                hit = self.find(style, seq)
                if hit is not None and (d := ((self.features[style][hit] - f) ** 2).sum()) < best:
                    best, found[i] = d, style
        return found

    def find(self, style: str, sequence: str) -> int | None:
        """The row of `style`'s drawing of `sequence`, or None when that style does not draw it."""
        found = np.nonzero(self.sequences[style] == sequence)[0]
        return int(found[0]) if len(found) else None

    def index(self, style: str, sequence: str) -> int:
        found = self.find(style, sequence)
        if found is None:
            raise ValueError(f"No {style} reference for {sequence}.")
        return found


def retrieval_ranks(query: np.ndarray, gallery: np.ndarray, gallery_seqs: np.ndarray, gallery_bases: np.ndarray,
                    target_seqs: Sequence[str], target_bases: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """1-based ranks of each query's target among the gallery, by Euclidean feature distance.

    Emoji rank: 1 + the number of references of OTHER emoji strictly closer than the target's reference.
    Group rank: the same with whole variant groups: 1 + the number of other bases whose nearest reference
    is strictly closer than the nearest reference of the target's base. Ties count in the query's favour
    (only identical artwork ties exactly).
    """
    q, g = query.astype(np.float64), gallery.astype(np.float64)
    d = (q**2).sum(1)[:, None] + (g**2).sum(1)[None, :] - 2 * q @ g.T  # (Q, G) squared distances
    emoji_ranks, group_ranks = [], []
    unique_bases, base_index = np.unique(gallery_bases, return_inverse=True)
    for row, seq, base in zip(d, target_seqs, target_bases):
        own = gallery_seqs == seq
        emoji_ranks.append(1 + int((row[~own] < row[own].min()).sum()))
        per_base = np.full(len(unique_bases), np.inf)
        np.minimum.at(per_base, base_index, row)  # nearest reference of each base
        target = per_base[np.searchsorted(unique_bases, base)]
        group_ranks.append(1 + int((per_base < target).sum()))
    return np.array(emoji_ranks), np.array(group_ranks)


def recall_at(ranks: np.ndarray, ks: Sequence[int] = KS, prefix: str = "") -> dict[str, float]:
    return {f"{prefix}recall@{k}": float(np.mean(ranks <= k)) for k in ks}


def _blur(images: np.ndarray, resolution: int) -> np.ndarray:
    sigma = resolution / 32  # 1 px at 32 px
    return ndimage.gaussian_filter(to_float_images(images), (0, sigma, sigma, 0))


def baseline_images(refs: EmojiReferences, prompts: list[EmojiPrompt], seed: int = 0) -> dict[str, np.ndarray]:
    """The ceilings and floors for `prompts` (all of one style), as float images (N, R, R, 3) in [0, 1]."""
    style = prompts[0].style
    own = refs.images[style][[refs.index(style, p.sequence) for p in prompts]]
    res = own.shape[1]
    rng = np.random.default_rng(seed)
    wrong = np.roll(own, -1, axis=0) if len(own) > 1 else refs.images[style][[(refs.index(style, prompts[0].sequence) + 1) % len(refs.images[style])]]
    mean = refs.images[style].astype(np.float32).mean(0) / 255
    out = {
        "reference": to_float_images(own),
        "blurred": _blur(own, res),
        "wrong_emoji": to_float_images(wrong),
        "mean_image": np.repeat(mean[None], len(own), 0),
        "noise": rng.random(own.shape, dtype=np.float32),
    }
    others = [[refs.images[s][row] for s in sorted(refs.images) if s != style and (row := refs.find(s, p.sequence)) is not None]
              for p in prompts]
    if all(others):  # the right emoji as the other styles drew it (absent when some prompt's emoji has no other style)
        out["other_styles"] = np.stack([to_float_images(np.stack(drawings)).mean(axis=0) for drawings in others])
    return out


def score_images(refs: EmojiReferences, prompts: list[EmojiPrompt], images) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """Recall@k, group recall@k and style@1 of `images` (one per prompt; any styles), plus the per-image ranks."""
    features = colour_layout_features(images)
    style_hits = refs.nearest_style(features, [p.sequence for p in prompts]) == np.array([p.style for p in prompts], dtype=object)
    emoji_ranks, group_ranks = np.zeros(len(prompts), int), np.zeros(len(prompts), int)
    for style in sorted({p.style for p in prompts}):
        idx = [i for i, p in enumerate(prompts) if p.style == style]
        e, g = retrieval_ranks(features[idx], refs.features[style], refs.sequences[style], refs.bases[style],
                               [prompts[i].sequence for i in idx], [prompts[i].base for i in idx])
        emoji_ranks[idx], group_ranks[idx] = e, g
    style_at_1 = float(style_hits.mean()) if len(refs.features) > 1 else None
    return {**recall_at(emoji_ranks), **recall_at(group_ranks, prefix="group_"), "style@1": style_at_1}, emoji_ranks, group_ranks


def score_baselines(refs: EmojiReferences, prompts: list[EmojiPrompt], seed: int = 0) -> dict[str, dict[str, float]]:
    """Recall of each ceiling / floor on `prompts` (per style, then pooled)."""
    pooled: dict[str, list[np.ndarray]] = {name: [] for name in BASELINES}
    ordered: list[EmojiPrompt] = []
    styles = sorted({p.style for p in prompts})
    for style in styles:
        group = [p for p in prompts if p.style == style]
        ordered += group
        for name, images in baseline_images(refs, group, seed).items():
            pooled[name].append(images)
    # a baseline some style's prompts lack (other_styles) is left out rather than scored on part of the prompts
    return {name: score_images(refs, ordered, np.concatenate(parts))[0] for name, parts in pooled.items() if len(parts) == len(styles)}


@dataclass
class EmojiReport:
    """Results of `evaluate_emoji`: per prompt set the model's and the baselines' recalls, and the distribution metrics."""

    sets: dict[str, dict] = field(default_factory=dict)  # name -> {"n", "recall@k", "group_recall@k", "baselines": {...}}
    distribution: dict | None = None  # {"n", "model": {...}, "baselines": {...}}
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"sets": self.sets, "distribution": self.distribution, "settings": self.settings}

    def metrics(self, prefix: str = "emoji_") -> dict[str, float]:
        """Flat scalars for training logs and eval_results.json: emoji_<set>_recall@1, ..."""
        out = {f"{prefix}{name}_{k}": v for name, s in self.sets.items() for k, v in s.items() if k not in ("baselines", "n") and v is not None}
        if self.distribution:
            out.update({f"{prefix}{k}": v for k, v in self.distribution["model"].items() if k != "k"})
        return out

    def format_table(self) -> str:
        head = f"{'prompt set':<17}{'n':>5}" + "".join(f"{'R@' + str(k):>7}" for k in KS) + "".join(f"{'grp@' + str(k):>8}" for k in KS)
        head += f"{'style@1':>9}   | R@1 of: reference  blurred  wrong emoji  mean image  noise  other styles"
        lines = [head]
        for name, s in self.sets.items():
            b = s["baselines"]
            line = f"{name:<17}{s['n']:>5}" + "".join(f"{s[f'recall@{k}']:>7.3f}" for k in KS) + "".join(f"{s[f'group_recall@{k}']:>8.3f}" for k in KS)
            line += f"{s['style@1']:>9.3f}" if s["style@1"] is not None else f"{'-':>9}"
            line += f"   |        {b['reference']['recall@1']:>9.3f}{b['blurred']['recall@1']:>9.3f}{b['wrong_emoji']['recall@1']:>13.3f}"
            line += f"{b['mean_image']['recall@1']:>12.3f}{b['noise']['recall@1']:>7.3f}"
            line += f"{b['other_styles']['recall@1']:>14.3f}" if "other_styles" in b else f"{'-':>14}"
            lines.append(line)
        if self.distribution:
            dist = self.distribution
            lines += ["", f"Distribution over {dist['n']} seen prompts (features above; NOT comparable to published FID/KID):",
                      f"{'':<14}{'KID x1000':>10}{'FID':>9}{'precision':>11}{'recall':>8}{'density':>9}{'coverage':>10}"]
            for name, m in [("model", dist["model"]), *dist["baselines"].items()]:
                lines.append(f"{name:<14}{1000 * m['kid']:>10.2f}{m['fid']:>9.2f}{m['precision']:>11.3f}{m['recall']:>8.3f}{m['density']:>9.3f}{m['coverage']:>10.3f}")
        return "\n".join(lines)


def _generate_all(generate: Callable, prompts: list[str], batch_size: int, progress: Callable | None) -> np.ndarray:
    out = []
    for start in range(0, len(prompts), batch_size):
        out.append(to_float_images(generate(prompts[start : start + batch_size])))
        if progress is not None:
            progress(start + len(out[-1]), len(prompts))
    return np.concatenate(out)


def _distribution(refs: EmojiReferences, prompts: list[EmojiPrompt], images: np.ndarray, seed: int) -> dict:
    style_refs = [refs.images[p.style][refs.index(p.style, p.sequence)] for p in prompts]
    real = colour_layout_features(np.stack(style_refs))
    half = len(real) // 2
    baselines = {name: colour_layout_features(imgs) for name, imgs in
                 [("blurred", _blur(np.stack(style_refs), images.shape[1])),
                  ("mean_image", np.repeat(np.stack(style_refs).astype(np.float32).mean(0, keepdims=True) / 255, len(real), 0)),
                  ("noise", np.random.default_rng(seed).random(images.shape, dtype=np.float32))]}
    return {
        "n": len(prompts),
        "model": distribution_metrics(real, colour_layout_features(images), seed=seed),
        # Real against real: the first half of the references against the second, i.e. what a perfect
        # generator scores with this many samples (KID ~ 0; FID > 0 from the finite sample).
        "baselines": {"real_half": distribution_metrics(real[:half], real[half:], seed=seed),
                      **{name: distribution_metrics(real, f, seed=seed) for name, f in baselines.items()}},
    }


def evaluate_emoji(
    generate: Callable[[list[str]], np.ndarray],
    data,
    prompt_sets: Sequence[str] = SPEC_PROMPT_SETS,
    styles: Sequence[str] = ("noto",),
    n_per_set: int | None = 100,
    distribution_samples: int = 0,
    batch_size: int = 64,
    caption_style: str = "always",
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    references: EmojiReferences | None = None,
) -> EmojiReport:
    """Generate one image per prompt of each set and score it (see the module docstring).

    Args:
        generate: prompts -> images (B, H, W, 3), floats in [0, 1] or uint8; e.g.
            ``lambda p: pipe(p, generator=g, output_type="np").images``. Any square size: features are
            computed at 32 px; the baselines use the references' resolution.
        data: the Emoji `DatasetDict` (`build_emoji_dataset(size, styles)`) holding the asked styles.
        prompt_sets: any of "seen", "heldout_style", "heldout_variants", "validation", "dev_style" (which needs
            `with_dev_style_split`'s data).
        styles: styles of the prompts (heldout_style holds noto rows only).
        n_per_set: prompts per set (None: all of them).
        distribution_samples: > 0 adds KID / FID / PRDC over that many `seen` prompts (their images
            also serve the `seen` retrieval, so they are generated once).
        caption_style: "always" asks "{name}, {style} style"; "never" asks the name alone.
        references: `EmojiReferences.from_dataset(data)`, when the caller keeps it between calls.
    """
    start = time.perf_counter()
    unknown = [s for s in prompt_sets if s not in PROMPT_SETS]
    if unknown or not prompt_sets:
        raise ValueError(f"prompt_sets must be some of {PROMPT_SETS}, got {list(prompt_sets)}")
    refs = references or EmojiReferences.from_dataset(data)  # every style: retrieval uses the asked one, style@1 all of them
    missing = [s for s in styles if s not in refs.features]
    if missing:
        raise ValueError(f"The Emoji data set has no {missing} images; build it with those styles (styles={list(styles)}).")
    report = EmojiReport(settings={"styles": list(styles), "n_per_set": n_per_set, "distribution_samples": distribution_samples,
                                   "caption_style": caption_style, "seed": seed,
                                   "references": {s: len(v) for s, v in refs.sequences.items()}})
    for name in prompt_sets:
        n = max(n_per_set or 0, distribution_samples) if name == "seen" and distribution_samples else n_per_set
        prompts = emoji_prompts(data, name, styles, n, caption_style)
        if not prompts:
            continue
        images = _generate_all(generate, [p.prompt for p in prompts], batch_size, progress)
        k = len(prompts) if n_per_set is None else min(n_per_set, len(prompts))
        recalls, _, _ = score_images(refs, prompts[:k], images[:k])
        report.sets[name] = {"n": k, **recalls, "baselines": score_baselines(refs, prompts[:k], seed)}
        if name == "seen" and distribution_samples:
            report.distribution = _distribution(refs, prompts, images, seed)
    report.settings["seconds"] = round(time.perf_counter() - start, 1)
    return report


def evaluate_emoji_for_config(cfg, generate: Callable[[list[str]], np.ndarray]) -> dict[str, float]:
    """In-run evaluation for the training scripts on `--dataset_name emoji`: `cfg.eval_prompts_per_category`
    prompts of every set, in noto style when trained on it (the style `heldout_style` holds out), asked the
    way the model was trained (`--emoji_caption_style never`: by name); with `--emoji_dev_style`, also the
    `dev_style` set. Returns flat metrics (`emoji_seen_recall@1`, ...)."""
    from ..data.emoji import build_emoji_dataset, with_dev_style_split

    options = cfg.dataset_args  # EmojiDataArguments
    styles = ["noto"] if "noto" in options.emoji_styles else list(options.emoji_styles[:1])
    data = build_emoji_dataset(cfg.resolution, **options.builder_kwargs(cfg.seed))  # the training run's cached build
    key = (data["train"].info.description, cfg.resolution, options.emoji_dev_style)
    if key not in _PREPARED:  # features of ~15k references and the development split: once per run, not at every evaluation
        _PREPARED.clear()
        refs = EmojiReferences.from_dataset(data)  # every split's rows: the same gallery with or without the development split
        _PREPARED[key] = (data if options.emoji_dev_style is None else with_dev_style_split(data, options.emoji_dev_style)), refs
    data, refs = _PREPARED[key]
    sets = SPEC_PROMPT_SETS if options.emoji_dev_style is None else PROMPT_SETS
    report = evaluate_emoji(generate, data, prompt_sets=sets, styles=styles, n_per_set=cfg.eval_prompts_per_category, batch_size=cfg.eval_batch_size,
                            caption_style="never" if options.emoji_caption_style == "never" else "always", seed=cfg.seed,
                            references=refs)
    return report.metrics()


_PREPARED: dict[tuple, tuple] = {}  # (build, resolution, dev style) -> (the data as scored, its EmojiReferences)

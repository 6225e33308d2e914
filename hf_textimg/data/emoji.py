"""The Emoji data set: real captioned artwork in four styles, built from locally installed packages.

Styles and their sources (nothing is downloaded at run time; see `emoji_sources`):

| style      | images                                                     | licence      |
|------------|------------------------------------------------------------|--------------|
| `noto`     | Debian `fonts-noto-color-emoji`: CBDT/CBLC colour bitmaps  | OFL-1.1      |
| `twemoji`  | npm `@twemoji/svg` (`npm pack`): SVGs                      | CC-BY-4.0    |
| `openmoji` | npm `openmoji`: colour SVGs (OpenMoji's own extras dropped)| CC-BY-SA-4.0 |
| `fluent`   | npm `fluentui-emoji`: the flat SVGs                        | MIT          |

Names, groups and skin-tone/gender variants come from Debian `unicode-data`
(`emoji-test.txt`); keywords from Debian `unicode-cldr-core` (CLDR annotations). The
caption is `"{name}, {style} style"` (spec: shared/specs/emoji.md).

Every artwork file is matched to an `emoji-test.txt` line by its code-point sequence
(U+FE0F ignored); files that match no fully-qualified or component line are dropped and
counted per style (the build report, `emoji_build_report`). This drops, among others, the
Noto font's right-to-left mirrored forms of ZWJ sequences (e.g. "2640 200D 1F3C3" for
"1F3C3 200D 2640") and emoji newer than the installed Unicode data.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import shutil
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
from datasets.utils import tqdm as hf_tqdm

from .emoji_arguments import CAPTION_STYLES
from .emoji_sources import STYLE_SOURCES, STYLES, npm_pack_command, package_version, read_style_files

logger = logging.getLogger(__name__)

__all__ = [
    "EmojiSourceError",
    "EmojiEntry",
    "STYLES",
    "build_emoji_dataset",
    "emoji_build_report",
    "emoji_caption",
    "caption_alternatives",
    "with_caption_style",
    "with_dev_style_split",
    "drop_dev_style_rows",
    "base_sequence",
    "parse_emoji_test",
    "load_cldr_keywords",
]

# Bump when the build changes what ends up in the data set, so old caches are not reused.
# 2: four styles, "{name}, {style} style" captions, sequences and bases without FE0F, spec split rules.
BUILD_VERSION = 2
VALIDATION_FRACTION = 0.1
HELDOUT_VARIANTS_FRACTION = 0.1
HELDOUT_STYLE_FRACTION = 0.1
SPLITS = ("train", "validation", "heldout_variants", "heldout_style")
HELDOUT_STYLE = "noto"  # the style whose images of the heldout_style bases leave train
DEV_STYLE_FRACTION = 0.1  # with_dev_style_split: not in the spec, a development copy of heldout_style carved out of train

DEFAULT_NOTO_FONT = "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"
DEFAULT_EMOJI_TEST = "/usr/share/unicode/emoji/emoji-test.txt"
DEFAULT_CLDR_DIR = "/usr/share/unicode/cldr/common"
# Environment overrides, mainly so tests can point at other files.
ENV_NOTO_FONT = "HF_TEXTIMG_NOTO_FONT"
ENV_EMOJI_TEST = "HF_TEXTIMG_EMOJI_TEST"
ENV_CLDR_DIR = "HF_TEXTIMG_CLDR_DIR"
ENV_CACHE = "HF_TEXTIMG_CACHE"

APT_HINT = "apt-get install fonts-noto-color-emoji unicode-data unicode-cldr-core"

LICENCES = {style: src.licence for style, src in STYLE_SOURCES.items()}

ZWJ, VS16 = 0x200D, 0xFE0F
SKIN_TONES = frozenset(range(0x1F3FB, 0x1F400))
GENDER_SIGNS = frozenset({0x2640, 0x2642})
# Gendered people -> their gender-neutral emoji, so "woman cook" and "cook" share a base.
NEUTRAL_PERSON = {
    0x1F468: 0x1F9D1, 0x1F469: 0x1F9D1,  # man, woman -> person
    0x1F466: 0x1F9D2, 0x1F467: 0x1F9D2,  # boy, girl -> child
    0x1F474: 0x1F9D3, 0x1F475: 0x1F9D3,  # old man, old woman -> older person
    0x1F934: 0x1FAC5, 0x1F478: 0x1FAC5,  # prince, princess -> person with crown
}
# Whole-sequence merges applied after neutralising (emoji that encode gender as separate code points).
_PEOPLE_HOLDING_HANDS = (0x1F9D1, ZWJ, 0x1F91D, ZWJ, 0x1F9D1)
NEUTRAL_SEQUENCE = {
    (0x1F46B,): _PEOPLE_HOLDING_HANDS,  # woman and man holding hands
    (0x1F46C,): _PEOPLE_HOLDING_HANDS,  # men holding hands
    (0x1F46D,): _PEOPLE_HOLDING_HANDS,  # women holding hands
    (0x1F9D1, ZWJ, 0x2764, ZWJ, 0x1F48B, ZWJ, 0x1F9D1): (0x1F48F,),  # kiss: person, person -> kiss
    (0x1F9D1, ZWJ, 0x2764, ZWJ, 0x1F9D1): (0x1F491,),  # couple with heart: person, person
    (0x1F385,): (0x1F9D1, ZWJ, 0x1F384),  # santa claus -> mx claus
    (0x1F936,): (0x1F9D1, ZWJ, 0x1F384),  # mrs. claus -> mx claus
    (0x1F46A,): (0x1F9D1, ZWJ, 0x1F9D1, ZWJ, 0x1F9D2),  # family -> two adults, one child
}


class EmojiSourceError(FileNotFoundError):
    """A source package (font, Unicode data, CLDR, npm package) is not installed."""


@dataclass(frozen=True)
class EmojiEntry:
    """One fully-qualified (or component) line of emoji-test.txt."""

    sequence: tuple[int, ...]  # fully-qualified code points, FE0F included
    name: str  # CLDR short name as written in emoji-test.txt ("flag: France")
    group: str
    subgroup: str
    status: str  # "fully-qualified" or "component"


@dataclass
class _Row:
    entry: EmojiEntry
    style: str
    image_id: str  # identifies the source artwork; identical artwork shares an id
    png: bytes  # the processed RGB image, PNG-encoded


# ----------------------------------------------------------------------------- sequences


def format_sequence(seq: tuple[int, ...]) -> str:
    """(0x1F469, 0x200D, 0x1F373) -> "1F469 200D 1F373"."""
    return " ".join(f"{cp:04X}" for cp in seq)


def strip_vs(seq) -> tuple[int, ...]:
    return tuple(cp for cp in seq if cp != VS16)


def _split_zwj(seq: tuple[int, ...]) -> list[tuple[int, ...]]:
    parts, cur = [], []
    for cp in seq:
        if cp == ZWJ:
            parts.append(tuple(cur))
            cur = []
        else:
            cur.append(cp)
    parts.append(tuple(cur))
    return parts


def _join_zwj(parts: list[tuple[int, ...]]) -> tuple[int, ...]:
    out: list[int] = []
    for i, part in enumerate(parts):
        if i:
            out.append(ZWJ)
        out.extend(part)
    return tuple(out)


def base_sequence(seq) -> tuple[int, ...]:
    """The base of an emoji: skin tones, gender signs and gendered people removed.

    Steps, on the sequence without U+FE0F: drop skin-tone modifiers (U+1F3FB..1F3FF);
    drop ZWJ components that are a lone gender sign (U+2640/2642); map gendered people
    to the neutral emoji (man/woman -> person, boy/girl -> child, ...); merge a few
    gender-coded emoji (couples, kiss, holding hands, santa/mrs claus). A sequence that
    would become empty (a skin-tone swatch, the female sign) is its own base.
    Example: "woman cook: medium-dark skin tone" 1F469 1F3FE 200D 1F373 -> 1F9D1 200D 1F373.
    """
    seq = strip_vs(seq)
    parts = [tuple(cp for cp in part if cp not in SKIN_TONES) for part in _split_zwj(seq)]
    kept = [p for p in parts if p and not (len(p) == 1 and p[0] in GENDER_SIGNS)]
    if not kept:
        return seq
    kept = [tuple(NEUTRAL_PERSON.get(cp, cp) for cp in p) for p in kept]
    out = _join_zwj(kept)
    return NEUTRAL_SEQUENCE.get(out, out)


def has_skin_tone(seq) -> bool:
    return len(seq) > 1 and any(cp in SKIN_TONES for cp in seq)


# ----------------------------------------------------------------------------- sources


def _require(path: str | os.PathLike, what: str, how: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise EmojiSourceError(f"{what} not found at {path}. {how}")
    return path


def _apt(override: str) -> str:
    return f"Install it with `{APT_HINT}`, or point {override} at it."


def _resolve(arg, env: str | None, default) -> str | None:
    if arg is not None:
        return os.fspath(arg)
    return (os.environ.get(env) if env else None) or default


def parse_emoji_test(path: str | os.PathLike) -> tuple[str, list[EmojiEntry]]:
    """Parse emoji-test.txt -> (Unicode emoji version, fully-qualified and component entries in file order)."""
    version, group, subgroup, entries = "unknown", "", "", []
    line_re = re.compile(r"^([0-9A-F ]+?)\s*;\s*([a-z-]+)\s*#\s*\S+\s+E\d+\.\d+\s+(.+)$")
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("# Version:"):
                version = line.split(":", 1)[1].strip()
            elif line.startswith("# group:"):
                group = line.split(":", 1)[1].strip()
            elif line.startswith("# subgroup:"):
                subgroup = line.split(":", 1)[1].strip()
            elif line and not line.startswith("#"):
                m = line_re.match(line)
                if m and m.group(2) in ("fully-qualified", "component"):
                    seq = tuple(int(cp, 16) for cp in m.group(1).split())
                    entries.append(EmojiEntry(seq, m.group(3).strip(), group, subgroup, m.group(2)))
    if not entries:
        raise EmojiSourceError(f"No emoji found in {path}; is it emoji-test.txt? Install it with `{APT_HINT}`.")
    return version, entries


def load_cldr_keywords(cldr_dir: str | os.PathLike) -> dict[tuple[int, ...], list[str]]:
    """CLDR English keywords (annotations + annotationsDerived), keyed by sequence without FE0F, lowercased."""
    keywords: dict[tuple[int, ...], list[str]] = {}
    for sub in ("annotations", "annotationsDerived"):
        what = f"CLDR annotations ({sub}/en.xml, package unicode-cldr-core)"
        path = _require(Path(cldr_dir) / sub / "en.xml", what, _apt(f"cldr_dir / ${ENV_CLDR_DIR}"))
        for node in ET.parse(path).getroot().iter("annotation"):
            if node.get("type") == "tts" or not node.text:
                continue
            key = strip_vs(ord(ch) for ch in node.get("cp", ""))
            words = [w.strip().lower() for w in node.text.split("|") if w.strip()]
            keywords.setdefault(key, words)
    return keywords


def _fingerprint(path: Path) -> str:
    """sha256 of a file; for a folder (an unpacked npm package), of its file names and sizes."""
    h = hashlib.sha256()
    if path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(f"{file.relative_to(path).as_posix()}:{file.stat().st_size}\n".encode())
        return h.hexdigest()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _default_cache_dir() -> Path:
    return Path(os.environ.get(ENV_CACHE) or Path.home() / ".cache" / "hf_textimg")


def locate_style_source(style: str, cache_root: Path, path: str | os.PathLike | None = None) -> Path:
    """The font (noto) or npm tarball / unpacked folder of `style`.

    Order: `path`, the style's environment variable (`$HF_TEXTIMG_NOTO_FONT`, `$HF_TEXTIMG_TWEMOJI`,
    `$HF_TEXTIMG_OPENMOJI`, `$HF_TEXTIMG_FLUENT`), then the pinned tarball in `<cache_root>/sources/`
    or the default cache's `sources/`; the font defaults to Debian's path.
    Raises EmojiSourceError naming the package and the command that installs it.
    """
    src = STYLE_SOURCES[style]
    if style == "noto":
        font = _resolve(path, ENV_NOTO_FONT, DEFAULT_NOTO_FONT)
        return _require(font, "Noto Color Emoji font (package fonts-noto-color-emoji)", _apt(f"font_path / ${ENV_NOTO_FONT}"))
    folders = list(dict.fromkeys([cache_root / "sources", _default_cache_dir() / "sources"]))
    found = _resolve(path, src.env, None)
    if found is None:
        found = next((str(f / src.tarball_name) for f in folders if (f / src.tarball_name).exists()), str(folders[0] / src.tarball_name))
    how = f"Fetch it with `{npm_pack_command(style, folders[0])}`, or point source_paths[{style!r}] / ${src.env} at the .tgz or its unpacked folder."
    return _require(found, f"npm package {src.npm_spec} (style {style!r})", how)


def _locate_styles(styles, cache_root: Path, paths: dict, on_missing: str) -> tuple[dict[str, Path], dict[str, str]]:
    """(style -> source path, style -> why it is missing); raises when nothing (or, with on_missing="error", anything) is missing."""
    found, missing = {}, {}
    for style in styles:
        try:
            found[style] = locate_style_source(style, cache_root, paths.get(style))
        except EmojiSourceError as err:
            missing[style] = str(err)
    if missing and (on_missing == "error" or not found):
        raise EmojiSourceError(" ".join(missing.values()))
    for style, why in missing.items():
        logger.warning("Emoji style %r skipped: %s", style, why)
    return found, missing


# ----------------------------------------------------------------------------- rows


def _style_rows(style: str, source: Path, entries: list[EmojiEntry], size: int) -> tuple[list[_Row], dict]:
    """One row per emoji-test entry the style draws (emoji-test order), and the style's build report."""
    by_seq = {strip_vs(e.sequence): e for e in entries}
    # A file is one artwork (an SVG, or a font glyph that several sequences reach); it is unmatched
    # when none of the sequences it claims is an emoji-test.txt line.
    files, matched_files, duplicates, chosen = set(), set(), 0, {}
    for file in read_style_files(style, source, entries):
        files.add(file.name)
        if file.sequence is None or file.sequence not in by_seq:
            continue
        matched_files.add(file.name)
        if file.sequence in chosen:
            duplicates += 1  # a second file for one sequence (the first, in package order, is kept)
        else:
            chosen[file.sequence] = (by_seq[file.sequence], file)
    unmatched = sorted(files - matched_files)
    rendered: dict[str, bytes] = {}  # image_id -> PNG: shared artwork is rendered once
    rows = []
    for entry in hf_tqdm(entries, desc=f"Emoji {style} ({size} px)", unit="emoji", leave=False):  # datasets' tqdm: --quiet silences it
        if (item := chosen.get(strip_vs(entry.sequence))) is None:
            continue
        file = item[1]
        if file.image_id not in rendered:
            rendered[file.image_id] = _encode_png(file.render(size))
        rows.append(_Row(entry, style, file.image_id, rendered[file.image_id]))
    src = STYLE_SOURCES[style]
    report = {
        "package": src.package, "version": src.version if style != "noto" else None, "licence": src.licence,
        "source": source.name, "sha256": _fingerprint(source), "files": len(files), "images": len(rows),
        "unmatched": len(unmatched), "unmatched_examples": unmatched[:10], "duplicates": duplicates,
    }
    if style != "noto" and (found_version := package_version(source)) not in (None, src.version):
        report["version"] = found_version  # a tarball given by path may be another version than the pinned one
    logger.info("Emoji style %s: %d images from %d files; %d matched no emoji-test.txt sequence%s",
                style, len(rows), len(files), len(unmatched), f" (e.g. {', '.join(report['unmatched_examples'][:3])})" if unmatched else "")
    return rows, report


def _encode_png(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)  # tiny images: speed over size
    return buf.getvalue()


# ----------------------------------------------------------------------------- splits


def _unit_hash(text: str) -> float:
    """Deterministic hash of a string -> [0, 1): the first 64 bits of its sha256."""
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:16], 16) / 2**64


def heldout_variant_sequences(entries: list[EmojiEntry]) -> set[str]:
    """The one skin-tone variant (formatted sequence) of each `heldout_variants` base.

    Computed from emoji-test.txt alone, so it does not depend on which styles are installed.
    """
    variants: dict[str, list[str]] = {}
    for entry in entries:
        if has_skin_tone(strip_vs(entry.sequence)):
            base = format_sequence(base_sequence(entry.sequence))
            variants.setdefault(base, []).append(format_sequence(strip_vs(entry.sequence)))
    return {
        min(seqs, key=lambda s: _unit_hash("variant:" + s))
        for base, seqs in variants.items()
        if _unit_hash("validation:" + base) >= VALIDATION_FRACTION and _unit_hash("heldout_variants:" + base) < HELDOUT_VARIANTS_FRACTION
    }


def split_of(sequence: str, base: str, style: str, heldout_variants: set[str], variant_bases: set[str]) -> str:
    """The split of one image by the spec's hash rules (shared/specs/emoji.md), before duplicates are dropped.

    `sequence` and `base` are uppercase hex joined by spaces, without FE0F; `variant_bases` are the bases
    of `heldout_variants` (the heldout_style rule takes "the other bases").
    """
    if _unit_hash("validation:" + base) < VALIDATION_FRACTION:
        return "validation"
    if sequence in heldout_variants:
        return "heldout_variants"
    if style == HELDOUT_STYLE and base not in variant_bases and _unit_hash("heldout_style:" + base) < HELDOUT_STYLE_FRACTION:
        return "heldout_style"
    return "train"


def assign_splits(rows: list[_Row], entries: list[EmojiEntry]) -> list[str | None]:
    """Split name per row, or None for an evaluation row whose exact source image is also a train image."""
    held = heldout_variant_sequences(entries)
    variant_bases = {format_sequence(base_sequence(_seq(s))) for s in held}
    splits = [
        split_of(format_sequence(strip_vs(r.entry.sequence)), format_sequence(base_sequence(r.entry.sequence)), r.style, held, variant_bases)
        for r in rows
    ]
    # Identical artwork drawn for two emoji (a flag shared by two territories) must not sit in train and
    # in an evaluation split: the evaluation row is dropped rather than moved, so no row changes split.
    train_images = {row.image_id for row, split in zip(rows, splits) if split == "train"}
    return [None if split != "train" and row.image_id in train_images else split for row, split in zip(rows, splits)]


def _seq(text: str) -> tuple[int, ...]:
    return tuple(int(cp, 16) for cp in text.split())


# ----------------------------------------------------------------------------- build


_LIST = getattr(datasets, "List", datasets.Sequence)  # datasets < 4 has only Sequence


def _features() -> datasets.Features:
    return datasets.Features(
        {
            "image": datasets.Image(),
            "text": datasets.Value("string"),
            "name": datasets.Value("string"),
            "style": datasets.Value("string"),
            "sequence": datasets.Value("string"),
            "base": datasets.Value("string"),
            "keywords": _LIST(datasets.Value("string")),
            "group": datasets.Value("string"),
            "subgroup": datasets.Value("string"),
        }
    )


def _columns(rows: list[_Row], splits: list[str | None], keywords: dict) -> dict[str, dict[str, list]]:
    columns: dict[str, dict[str, list]] = {split: {k: [] for k in _features()} for split in SPLITS}
    for row, split in zip(rows, splits):
        if split is None:
            continue
        col, entry = columns[split], row.entry
        stripped, base = strip_vs(entry.sequence), base_sequence(entry.sequence)
        name = entry.name.lower()
        col["image"].append({"bytes": row.png, "path": None})
        col["text"].append(f"{name}, {row.style} style")
        col["name"].append(name)
        col["style"].append(row.style)
        col["sequence"].append(format_sequence(stripped))
        col["base"].append(format_sequence(base))
        # Fall back to the base's keywords for variants CLDR does not list.
        col["keywords"].append(list(keywords.get(stripped) or keywords.get(base, [])))
        col["group"].append(entry.group)
        col["subgroup"].append(entry.subgroup)
    return columns


def _dataset_info(version: str, size: int, asked: Sequence[str], reports: dict[str, dict], missing: dict[str, str]) -> datasets.DatasetInfo:
    built = [s for s in asked if s in reports]
    counts = ", ".join(f"{s}: {r['images']} images ({r['unmatched']} files unmatched)" for s, r in reports.items())
    report = {"build_version": BUILD_VERSION, "emoji_version": version, "size": size, "styles": reports,
              "skipped_styles": {s: why for s, why in missing.items()}}
    description = (
        f"Emoji artwork in {len(built)} style(s) at {size}px, Unicode emoji {version}: {counts}. "
        f"Captions '{{name}}, {{style}} style' from emoji-test.txt, keywords from CLDR. "
        f"Build report: {json.dumps(report)}"
    )
    attribution = "\n".join(f"{s}: {STYLE_SOURCES[s].attribution}, {STYLE_SOURCES[s].licence_name}, {STYLE_SOURCES[s].homepage}" for s in built)
    checksums = {r["source"]: {"num_bytes": None, "checksum": r["sha256"]} for r in reports.values()}
    return datasets.DatasetInfo(description=description, citation=attribution, license=" AND ".join(LICENCES[s] for s in built),
                                features=_features(), download_checksums=checksums)


def emoji_build_report(data) -> dict:
    """The build report stored in an Emoji data set's info: per style its package, version, sha256,
    file / image / unmatched counts; the styles skipped as missing; the Unicode version and size."""
    if isinstance(data, datasets.DatasetDict):
        data = next(iter(data.values()))
    marker = "Build report: "
    text = data.info.description or ""
    if marker not in text:
        raise ValueError("This data set has no emoji build report; build it with build_emoji_dataset.")
    return json.loads(text.split(marker, 1)[1])


def _save_atomically(dsd: datasets.DatasetDict, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent))
    try:
        # One shard per split: the data is small, and an empty split saved with zero shards fails to load.
        dsd.save_to_disk(str(tmp), num_shards={split: 1 for split in dsd})
        if target.exists():  # rebuild=True
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.replace(tmp, target)
        except OSError:  # another process saved the same build first; its copy is identical
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _check_args(styles, size: int, on_missing: str) -> tuple[str, ...]:
    styles = (styles,) if isinstance(styles, str) else tuple(styles)
    unknown = [s for s in styles if s not in STYLES]
    if not styles or unknown:
        raise ValueError(f"styles must be one or more of {STYLES}, got {list(styles)!r}")
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")
    if on_missing not in ("skip", "error"):
        raise ValueError(f"on_missing must be 'skip' or 'error', got {on_missing!r}")
    return tuple(s for s in STYLES if s in styles)  # canonical order, duplicates removed


def build_emoji_dataset(
    size: int = 32,
    styles: str | Sequence[str] = "noto",
    cache_dir: str | os.PathLike | None = None,
    rebuild: bool = False,
    *,
    on_missing: str = "skip",
    font_path: str | os.PathLike | None = None,
    emoji_test_path: str | os.PathLike | None = None,
    cldr_dir: str | os.PathLike | None = None,
    source_paths: dict[str, str | os.PathLike] | None = None,
) -> datasets.DatasetDict:
    """Build (or load from cache) the Emoji data set of captioned emoji images.

    Args:
        size: side of the square RGB images in pixels (32, 64 and 128 are typical).
        styles: one or more of "noto", "twemoji", "openmoji", "fluent" (rows come in that order).
        cache_dir: root of the cache; default `$HF_TEXTIMG_CACHE` or `~/.cache/hf_textimg`. npm
            tarballs are looked for in `<cache_dir>/sources/` (`npm pack` them there); the set is
            saved with `save_to_disk` under `<cache_dir>/emoji/<key>`, where the key hashes the
            sources (font, tarballs, emoji-test.txt, CLDR), the styles, size and `BUILD_VERSION`.
        rebuild: rebuild even if a cached copy exists.
        on_missing: a style whose package is not installed is skipped with a warning naming the
            package and the command that fetches it ("skip"), or raises ("error"). When none of
            the asked styles is installed, it always raises.
        font_path / emoji_test_path / cldr_dir: overrides of the Debian files (also
            `$HF_TEXTIMG_NOTO_FONT`, `$HF_TEXTIMG_EMOJI_TEST`, `$HF_TEXTIMG_CLDR_DIR`).
        source_paths: style -> npm tarball or unpacked folder (also `$HF_TEXTIMG_TWEMOJI`,
            `$HF_TEXTIMG_OPENMOJI`, `$HF_TEXTIMG_FLUENT`).

    Columns: `image` (RGB, composited on white, padded to square with the style's margin,
    area-resized to `size`), `text` ("woman cook: medium-dark skin tone, noto style"), `name`
    (lowercased emoji-test/CLDR name), `style`, `sequence` (hex without FE0F, "1F469 1F3FE 200D 1F373"),
    `base` (`base_sequence`, same format: "1F9D1 200D 1F373" for every cook), `keywords` (CLDR),
    `group`, `subgroup`.

    Splits (shared/specs/emoji.md; they depend only on sequence and style strings, so a row never
    moves between builds, whichever styles are installed). u(s) is sha256(s) as a fraction in [0, 1):
      1. `validation`: every image of the bases with u("validation:" + base) < 0.1 (unseen emoji).
      2. `heldout_variants`: for the other bases with skin-tone variants and
         u("heldout_variants:" + base) < 0.1, the variant with the smallest u("variant:" + sequence)
         (all its styles); the base's other variants stay in train.
      3. `heldout_style`: for the other bases with u("heldout_style:" + base) < 0.1, the noto images;
         the same emoji's other styles stay in train.
      4. `train`: the rest. An evaluation row whose exact source image is also a train image is dropped.

    The info holds the licences, attributions and a build report (`emoji_build_report`): per style
    the package, version, tarball sha256, and how many files matched no emoji-test.txt sequence.

    Raises:
        EmojiSourceError (a FileNotFoundError) naming the Debian or npm package and how to get it.
        ValueError for bad `styles`, `size` or `on_missing`.
    """
    # 1. Check arguments and locate the sources.
    asked = _check_args(styles, size, on_missing)
    cache_root = Path(cache_dir) if cache_dir is not None else _default_cache_dir()
    emoji_test = _resolve(emoji_test_path, ENV_EMOJI_TEST, DEFAULT_EMOJI_TEST)
    emoji_test = _require(emoji_test, "emoji-test.txt (package unicode-data)", _apt(f"emoji_test_path / ${ENV_EMOJI_TEST}"))
    cldr = Path(_resolve(cldr_dir, ENV_CLDR_DIR, DEFAULT_CLDR_DIR))
    for sub in ("annotations", "annotationsDerived"):
        _require(cldr / sub / "en.xml", f"CLDR annotations ({sub}/en.xml, package unicode-cldr-core)", _apt(f"cldr_dir / ${ENV_CLDR_DIR}"))
    found, missing = _locate_styles(asked, cache_root, {"noto": font_path, **(source_paths or {})}, on_missing)

    # 2. Cache lookup, keyed by source contents and build parameters.
    version, entries = parse_emoji_test(emoji_test)
    sources = {"emoji_test": emoji_test, "cldr": cldr / "annotations" / "en.xml", "cldr_derived": cldr / "annotationsDerived" / "en.xml", **found}
    key_parts = {"build": BUILD_VERSION, "asked": asked, "size": size, "emoji_version": version}
    key_parts.update({name: _fingerprint(path) for name, path in sources.items()})
    key = hashlib.sha256(json.dumps(key_parts, sort_keys=True).encode()).hexdigest()[:16]
    target = cache_root / "emoji" / f"{'-'.join(found)}-{size}px-emoji{version}-{key}"
    if target.exists() and not rebuild:
        logger.info("Emoji data set loaded from cache %s", target)
        return datasets.load_from_disk(str(target))

    # 3. Render every emoji-test entry each style draws; splits; columns.
    keywords = load_cldr_keywords(cldr)
    rows, reports = [], {}
    for style, source in found.items():
        style_rows, reports[style] = _style_rows(style, source, entries, size)
        rows += style_rows
    columns = _columns(rows, assign_splits(rows, entries), keywords)

    # 4. Assemble and save atomically (build in a temp folder, then rename).
    dsd = datasets.DatasetDict()
    for split in SPLITS:
        info = _dataset_info(version, size, asked, reports, missing)
        dsd[split] = datasets.Dataset.from_dict(columns[split], features=_features(), info=info, split=split)
    _save_atomically(dsd, target)
    return datasets.load_from_disk(str(target))


# ----------------------------------------------------------------------------- captions


def emoji_caption(example: dict, rng, keyword_prob: float = 0.5, max_keywords: int = 2, style_prob: float = 1.0) -> str:
    """Sample a training caption from an example's name, CLDR keywords and style.

    With probability `1 - keyword_prob` the caption starts with the name alone ("mushroom");
    otherwise the name followed by 1..`max_keywords` keywords, in random order, that are not
    already part of the name ("mushroom, toadstool"). With probability `style_prob` (and when the
    example has a `style`) ", {style} style" follows: "mushroom, toadstool, noto style".

    `rng` is a `random.Random` or a `numpy.random.Generator` (only `rng.random()` is
    used), so captions are reproducible given the generator's seed.
    """
    name = example.get("name") or example["text"]
    extra = [k for k in dict.fromkeys(example.get("keywords") or []) if k and k not in name]
    parts = [name]
    if extra and max_keywords >= 1 and rng.random() < keyword_prob:
        n = 1 + int(rng.random() * min(max_keywords, len(extra)))
        parts += sorted(extra, key=lambda _: rng.random())[:n]
    if example.get("style") and style_prob > 0 and (style_prob >= 1 or rng.random() < style_prob):
        parts.append(f"{example['style']} style")
    return ", ".join(parts)


def caption_alternatives(text: str, name: str, caption_style: str = "always") -> str | list[str]:
    """The training caption(s) of one row: "always" the spec's "{name}, {style} style"; "never" the name
    alone (the prompt "crab" then means any style); "sometimes" both, as a list of which training
    picks one at random each time it shows the image (see `TensorImageTextDataset`)."""
    if caption_style not in CAPTION_STYLES:
        raise ValueError(f"caption_style must be one of {CAPTION_STYLES}, got {caption_style!r}")
    return {"always": text, "never": name, "sometimes": [text, name]}[caption_style]


def with_caption_style(data: datasets.Dataset, caption_style: str = "always", column: str = "text") -> datasets.Dataset:
    """`data` with its caption `column` rewritten by `caption_alternatives` (images untouched)."""
    if caption_style == "always":
        caption_alternatives("", "", caption_style)
        return data
    if "name" not in data.column_names:
        raise ValueError(f"caption_style={caption_style!r} needs the Emoji set's `name` column; its columns are {data.column_names}.")
    captions = [caption_alternatives(t, n, caption_style) for t, n in zip(data[column], data["name"])]
    return data.remove_columns(column).add_column(column, captions)


# ----------------------------------------------------------------------------- development split (not in the spec)
# heldout_style measures composition ("crab, noto style" with crabs seen only in other styles); choosing training
# settings on it would tune on the benchmark. The development split asks the same question of other emoji: for the
# train bases with u("dev_style:" + base) < 0.1 (heldout_style's bases excluded, so neither set loses a second
# style), one style's images leave train. A run trained with `--emoji_dev_style STYLE` is scored on it in-run and by
# `hf-textimg evaluate --prompt-set validation --emoji-dev-style STYLE`; the spec's splits do not change.


def is_dev_style_row(base: str, style: str, dev_style: str) -> bool:
    """Whether a train row (its `base` and `style`) belongs to the `dev_style` development split."""
    return (style == dev_style and _unit_hash("heldout_style:" + base) >= HELDOUT_STYLE_FRACTION
            and _unit_hash("dev_style:" + base) < DEV_STYLE_FRACTION)


def _check_dev_style(data: datasets.Dataset, dev_style: str) -> None:
    if dev_style not in STYLES:
        raise ValueError(f"dev_style must be one of {' '.join(STYLES)}, got {dev_style!r}.")
    missing = {"base", "style"} - set(data.column_names)
    if missing:
        raise ValueError(f"The development split needs the Emoji set's `base` and `style` columns; {sorted(missing)} missing "
                         f"(columns: {data.column_names}).")


def _dev_mask(data: datasets.Dataset, dev_style: str) -> np.ndarray:
    _check_dev_style(data, dev_style)
    return np.array([is_dev_style_row(b, s, dev_style) for b, s in zip(data["base"], data["style"])], dtype=bool)


def drop_dev_style_rows(train: datasets.Dataset, dev_style: str) -> datasets.Dataset:
    """The train split without its `dev_style` development rows (what a run with `--emoji_dev_style` trains on)."""
    return train.select(np.nonzero(~_dev_mask(train, dev_style))[0])


def with_dev_style_split(data: datasets.DatasetDict, dev_style: str) -> datasets.DatasetDict:
    """`data` with the development rows of `dev_style` moved from `train` to a new `dev_style` split.

    As the spec does for its own splits, a development row whose exact image is still a train image (artwork
    shared by two emoji) is dropped rather than kept, so no development image is ever trained on.
    """
    train = data["train"]
    mask = _dev_mask(train, dev_style)
    encoded = train.cast_column("image", datasets.Image(decode=False))["image"]  # PNG bytes, not decoded
    kept = np.nonzero(~mask)[0]
    train_images = {encoded[i]["bytes"] for i in kept}
    dev = [i for i in np.nonzero(mask)[0] if encoded[i]["bytes"] not in train_images]
    return datasets.DatasetDict({**data, "train": train.select(kept), "dev_style": train.select(dev)})

"""The Emoji data set: real captioned artwork built from locally installed packages.

Sources (nothing is downloaded at run time):

| style     | images                                                        | licence      |
|-----------|---------------------------------------------------------------|--------------|
| `noto`    | Debian `fonts-noto-color-emoji`: CBDT/CBLC colour bitmaps      | SIL OFL 1.1  |
| `twemoji` | npm `emoji-datasource-twitter` (`npm pack`): 64x64 PNGs        | CC-BY 4.0    |

Names, groups and skin-tone/gender variants come from Debian `unicode-data`
(`emoji-test.txt`); keywords from Debian `unicode-cldr-core` (CLDR annotations).

Every image is matched to an `emoji-test.txt` line by its exact code-point sequence
(variation selector U+FE0F ignored, as the font's shaping does); glyphs that match no
fully-qualified or component line are dropped. This drops the font's right-to-left
mirrored forms of ZWJ sequences (e.g. "2640 200D 1F3C3" for "1F3C3 200D 2640") and
sequences newer than the installed Unicode data, and it keeps pairs such as
"people holding hands: light skin tone, dark skin tone" and its mirror apart, because
each is looked up by its own forward sequence.
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import datasets
from PIL import Image

__all__ = [
    "EmojiSourceError",
    "EmojiEntry",
    "build_emoji_dataset",
    "emoji_caption",
    "base_sequence",
    "parse_emoji_test",
    "load_cldr_keywords",
]

# Bump when the build changes what ends up in the data set, so old caches are not reused.
BUILD_VERSION = 1
# Twemoji art fills its 64x64 box edge to edge, while Noto leaves ~5% a side: a 4 px margin
# (72x72 canvas) puts both styles at about the same scale and keeps the corners white.
TWEMOJI_MARGIN = 4
VALIDATION_FRACTION = 0.1
HELDOUT_VARIANTS_FRACTION = 0.1
HELDOUT_STYLE_FRACTION = 0.1
STYLES = ("noto", "twemoji", "both")

DEFAULT_NOTO_FONT = "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"
DEFAULT_EMOJI_TEST = "/usr/share/unicode/emoji/emoji-test.txt"
DEFAULT_CLDR_DIR = "/usr/share/unicode/cldr/common"
# Environment overrides, mainly so tests can point at missing files.
ENV_NOTO_FONT = "HF_TEXTIMG_NOTO_FONT"
ENV_EMOJI_TEST = "HF_TEXTIMG_EMOJI_TEST"
ENV_CLDR_DIR = "HF_TEXTIMG_CLDR_DIR"
ENV_TWEMOJI = "HF_TEXTIMG_TWEMOJI"
ENV_CACHE = "HF_TEXTIMG_CACHE"

APT_HINT = "apt-get install fonts-noto-color-emoji unicode-data unicode-cldr-core"
NPM_HINT = "npm pack emoji-datasource-twitter"

LICENCES = {"noto": "OFL-1.1", "twemoji": "CC-BY-4.0"}

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
    image_id: str  # identifies the source bitmap; identical artwork shares an id
    png: bytes  # the processed RGB image, PNG-encoded
    keywords: list[str] = field(default_factory=list)


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


def _resolve(arg, env: str, default) -> str | None:
    if arg is not None:
        return os.fspath(arg)
    return os.environ.get(env) or default


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


# ----------------------------------------------------------------------------- images


def to_square_rgb(rgba: Image.Image, size: int, margin: int = 0) -> Image.Image:
    """Composite onto white, pad to a centred square (white) plus `margin` source pixels a side, BOX-resize to `size`."""
    rgba = rgba.convert("RGBA")
    side = max(rgba.size) + 2 * margin
    canvas = Image.new("RGBA", (side, side), (255, 255, 255, 255))
    offset = ((side - rgba.width) // 2, (side - rgba.height) // 2)
    canvas.alpha_composite(rgba, offset)
    return canvas.convert("RGB").resize((size, size), Image.Resampling.BOX)


def _encode_png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)  # tiny images: speed over size
    return buf.getvalue()


def noto_glyph_sequences(font) -> dict[tuple[int, ...], str]:
    """Map code-point sequences (no FE0F) -> glyph name, from the cmap plus all GSUB ligatures.

    The font's right-to-left (reversed) ligatures are included here too; they are never
    used, because rows are looked up by each emoji-test.txt line's own forward sequence.
    """
    cmap = font.getBestCmap()
    seq_to_glyph: dict[tuple[int, ...], str] = {(cp,): g for cp, g in cmap.items()}
    glyph_to_seq: dict[str, tuple[int, ...]] = {}
    for cp, g in sorted(cmap.items()):
        glyph_to_seq.setdefault(g, (cp,))
    if "GSUB" not in font:
        return seq_to_glyph
    for lookup in font["GSUB"].table.LookupList.Lookup:
        for sub in lookup.SubTable:
            if lookup.LookupType == 7:  # extension lookup wraps the real subtable
                sub = sub.ExtSubTable
            if getattr(sub, "LookupType", lookup.LookupType) != 4:
                continue
            for first, ligatures in sub.ligatures.items():
                for lig in ligatures:
                    glyphs = [first, *lig.Component]
                    if not all(g in glyph_to_seq for g in glyphs):
                        continue  # a component that is itself a substitution result
                    seq = tuple(cp for g in glyphs for cp in glyph_to_seq[g])
                    seq_to_glyph.setdefault(seq, lig.LigGlyph)
    return seq_to_glyph


def _noto_rows(font_path: Path, entries: list[EmojiEntry], size: int) -> list[_Row]:
    from fontTools.ttLib import TTFont

    font = TTFont(font_path, lazy=True)
    if "CBDT" not in font or "CBLC" not in font:
        raise EmojiSourceError(f"{font_path} has no CBDT/CBLC colour bitmaps; expected NotoColorEmoji.ttf from `{APT_HINT}`.")
    seq_to_glyph = noto_glyph_sequences(font)
    # Largest strike (the font has one: 136x128 PNGs at 109 ppem).
    strikes = font["CBLC"].strikes
    best = max(range(len(strikes)), key=lambda i: strikes[i].bitmapSizeTable.ppemY)
    bitmaps = font["CBDT"].strikeData[best]

    rows, processed = [], {}
    for entry in entries:
        glyph = seq_to_glyph.get(strip_vs(entry.sequence))
        if glyph is None or glyph not in bitmaps:
            continue
        if glyph not in processed:  # some flags share one glyph
            bitmap = bitmaps[glyph]
            with Image.open(io.BytesIO(bitmap.imageData)) as src:
                processed[glyph] = _encode_png(to_square_rgb(src, size))
        rows.append(_Row(entry, "noto", f"noto:{glyph}", processed[glyph]))
    return rows


def _find_twemoji(path: str | None, cache_dir: Path) -> Path:
    """An `npm pack emoji-datasource-twitter` tarball, or the folder it unpacks to.

    Without a path: the newest `emoji-datasource-twitter-*.tgz` in `<cache_dir>/sources`,
    else in the default cache's `sources` folder.
    """
    folders = list(dict.fromkeys([cache_dir / "sources", _default_cache_dir() / "sources"]))
    if path is None:
        for folder in folders:
            found = glob.glob(str(folder / "emoji-datasource-twitter-*.tgz"))
            if found:  # newest version: "16.0.0" > "9.0.0"
                path = max(found, key=lambda p: [int(n) for n in re.findall(r"\d+", Path(p).name)])
                break
        else:
            path = str(folders[0] / "emoji-datasource-twitter-<version>.tgz")
    how = (
        f"Fetch it with `{NPM_HINT}` run in {folders[0]}, or point twemoji_path / "
        f"${ENV_TWEMOJI} at the .tgz or its unpacked folder."
    )
    return _require(path, "npm package emoji-datasource-twitter", how)


def _twemoji_rows(pack: Path, entries: list[EmojiEntry], size: int) -> list[_Row]:
    """Twemoji 64x64 PNGs, named by code points ("1f469-200d-1f373.png"), from the npm tarball or folder."""
    by_seq = {strip_vs(e.sequence): e for e in entries}
    name_re = re.compile(r"(?:^|/)img/twitter/64/([0-9a-f-]+)\.png$")

    def sequence_of(member_name: str):
        m = name_re.search(member_name)
        if m:
            return strip_vs(tuple(int(cp, 16) for cp in m.group(1).split("-")))
        return None

    rows, seen = [], set()

    def add(seq, data: bytes, image_id: str):
        entry = by_seq.get(seq)
        if entry is None or seq in seen:
            return
        seen.add(seq)
        with Image.open(io.BytesIO(data)) as src:
            png = _encode_png(to_square_rgb(src, size, margin=TWEMOJI_MARGIN))
        rows.append(_Row(entry, "twemoji", image_id, png))

    if pack.is_dir():
        for file in sorted(pack.rglob("*.png")):
            seq = sequence_of(file.as_posix())
            if seq is not None:
                data = file.read_bytes()
                add(seq, data, "twemoji:" + hashlib.sha1(data).hexdigest())
    else:
        with tarfile.open(pack) as tar:
            for member in tar:
                seq = sequence_of(member.name)
                if seq is not None and member.isfile():
                    data = tar.extractfile(member).read()
                    add(seq, data, "twemoji:" + hashlib.sha1(data).hexdigest())
    if not rows:
        raise EmojiSourceError(f"No img/twitter/64/*.png images matched emoji-test.txt in {pack}; expected the package from `{NPM_HINT}`.")
    order = {strip_vs(e.sequence): i for i, e in enumerate(entries)}
    rows.sort(key=lambda r: order[strip_vs(r.entry.sequence)])
    return rows


# ----------------------------------------------------------------------------- splits


def _unit_hash(text: str) -> float:
    """Deterministic hash of a string -> [0, 1)."""
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:16], 16) / 2**64


def _flag(region: str) -> str:
    return format_sequence(tuple(0x1F1E6 + ord(ch) - ord("A") for ch in region))


# Territories drawn with their sovereign's flag (identical artwork in Noto and/or Twemoji):
# they share a split key so the same picture cannot sit in train and validation.
FLAG_ALIASES = {_flag(a): _flag(b) for a, b in [("HM", "AU"), ("BV", "NO"), ("SJ", "NO"), ("MF", "FR"),
                                                ("CP", "FR"), ("UM", "US"), ("EA", "ES"), ("DG", "IO")]}


def assign_splits(rows: list[_Row], bases: list[str], second_style: str | None = None) -> list[str | None]:
    """Split name per row, or None for a row dropped as a duplicate (see `build_emoji_dataset`)."""

    def key(base: str) -> str:
        return FLAG_ALIASES.get(base, base)

    def is_validation(base: str) -> bool:
        return _unit_hash("validation:" + key(base)) < VALIDATION_FRACTION

    # heldout_variants: one skin-tone variant of ~10% of train bases that have skin-tone variants.
    variants: dict[str, set[str]] = {}
    for row, base in zip(rows, bases):
        if has_skin_tone(row.entry.sequence) and not is_validation(base):
            variants.setdefault(base, set()).add(format_sequence(row.entry.sequence))
    heldout_variant = {
        min(seqs, key=lambda s: _unit_hash("variant:" + s))
        for base, seqs in variants.items()
        if _unit_hash("heldout_variants:" + base) < HELDOUT_VARIANTS_FRACTION
    }

    splits: list[str | None] = []
    for row, base in zip(rows, bases):
        if is_validation(base):
            splits.append("validation")
        elif format_sequence(row.entry.sequence) in heldout_variant:
            splits.append("heldout_variants")
        elif row.style == second_style and _unit_hash("heldout_style:" + key(base)) < HELDOUT_STYLE_FRACTION:
            splits.append("heldout_style")
        else:
            splits.append("train")

    # Safety net for artwork shared across bases that the rules above do not know about
    # (e.g. one Twemoji file reused for two unrelated emoji): drop evaluation rows whose
    # exact source image is also a train image, rather than move them between splits.
    train_images = {row.image_id for row, split in zip(rows, splits) if split == "train"}
    return [None if split != "train" and row.image_id in train_images else split for row, split in zip(rows, splits)]


# ----------------------------------------------------------------------------- build


def _default_cache_dir() -> Path:
    return Path(os.environ.get(ENV_CACHE) or Path.home() / ".cache" / "hf_textimg")


_LIST = getattr(datasets, "List", datasets.Sequence)  # datasets < 4 has only Sequence


def _features() -> datasets.Features:
    return datasets.Features(
        {
            "image": datasets.Image(),
            "text": datasets.Value("string"),
            "keywords": _LIST(datasets.Value("string")),
            "group": datasets.Value("string"),
            "subgroup": datasets.Value("string"),
            "sequence": datasets.Value("string"),
            "base": datasets.Value("string"),
            "style": datasets.Value("string"),
        }
    )


def build_emoji_dataset(
    size: int = 32,
    style: str = "noto",
    cache_dir: str | os.PathLike | None = None,
    rebuild: bool = False,
    *,
    font_path: str | os.PathLike | None = None,
    emoji_test_path: str | os.PathLike | None = None,
    cldr_dir: str | os.PathLike | None = None,
    twemoji_path: str | os.PathLike | None = None,
) -> datasets.DatasetDict:
    """Build (or load from cache) the Emoji data set of captioned emoji images.

    Args:
        size: side of the square RGB images in pixels (32 or 64 are typical).
        style: "noto" (Debian font), "twemoji" (npm package) or "both" (noto first).
        cache_dir: root of the cache; default `$HF_TEXTIMG_CACHE` or `~/.cache/hf_textimg`.
            The set is saved with `save_to_disk` under `<cache_dir>/emoji/<key>`, where the
            key hashes the source files (font, emoji-test.txt, CLDR, twemoji package),
            the Unicode emoji version, style, size and `BUILD_VERSION`.
        rebuild: rebuild even if a cached copy exists.
        font_path / emoji_test_path / cldr_dir / twemoji_path: source overrides; defaults
            from `$HF_TEXTIMG_NOTO_FONT`, `$HF_TEXTIMG_EMOJI_TEST`, `$HF_TEXTIMG_CLDR_DIR`,
            `$HF_TEXTIMG_TWEMOJI`, else the Debian paths (twemoji: the newest
            `<cache_dir>/sources/emoji-datasource-twitter-*.tgz`).

    Columns: `image` (RGB, composited on white, padded to square, BOX-resized to `size`),
    `text` (lowercased emoji-test/CLDR name, "woman cook: medium-dark skin tone"),
    `keywords` (lowercased CLDR keywords; may be empty for emoji newer than the CLDR data),
    `group`, `subgroup`, `sequence` (fully-qualified code points, "1F469 1F3FE 200D 1F373"),
    `base` (see `base_sequence`; written as the fully-qualified emoji when one exists,
    e.g. "1F9D1 200D 1F373" for every cook), `style`.

    Splits (deterministic: they depend only on sequence strings, never on the style or
    on which other sources are installed, so a row never moves between builds):
      1. Each row's split key `k` is its base; territories drawn with another country's
         flag use that country's flag (`FLAG_ALIASES`: "flag: St. Martin" -> France).
      2. `validation`: every row with sha256("validation:" + k) < 0.1 (~10% of bases).
      3. `heldout_variants`: among the other bases with skin-tone variants, those with
         sha256("heldout_variants:" + base) < 0.1 send one skin-tone variant, the one
         with the smallest sha256("variant:" + sequence), here (every style of it); the
         base's other variants stay in train.
      4. `heldout_style` (style="both" only): for train bases with
         sha256("heldout_style:" + k) < 0.1, the twemoji images go here while their
         noto images stay in train.
      5. `train`: everything else (both styles, for style="both").
      6. Safety net: an evaluation row whose exact source image is also used by a train
         row (a few Twemoji files are reused across unrelated emoji) is dropped.
    Here sha256(s) means the first 64 bits of the digest as a fraction in [0, 1).

    Raises:
        EmojiSourceError (a FileNotFoundError) naming the Debian or npm package to install.
        ValueError for a bad `style` or `size`.
    """
    # 1. Check arguments and locate the sources.
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")
    cache_root = Path(cache_dir) if cache_dir is not None else _default_cache_dir()
    styles = ("noto", "twemoji") if style == "both" else (style,)
    emoji_test = _resolve(emoji_test_path, ENV_EMOJI_TEST, DEFAULT_EMOJI_TEST)
    emoji_test = _require(emoji_test, "emoji-test.txt (package unicode-data)", _apt(f"emoji_test_path / ${ENV_EMOJI_TEST}"))
    cldr = Path(_resolve(cldr_dir, ENV_CLDR_DIR, DEFAULT_CLDR_DIR))
    for sub in ("annotations", "annotationsDerived"):
        what = f"CLDR annotations ({sub}/en.xml, package unicode-cldr-core)"
        _require(cldr / sub / "en.xml", what, _apt(f"cldr_dir / ${ENV_CLDR_DIR}"))
    sources = {"emoji_test": emoji_test, "cldr": cldr / "annotations" / "en.xml", "cldr_derived": cldr / "annotationsDerived" / "en.xml"}
    if "noto" in styles:
        font = _resolve(font_path, ENV_NOTO_FONT, DEFAULT_NOTO_FONT)
        what = "Noto Color Emoji font (package fonts-noto-color-emoji)"
        sources["noto"] = _require(font, what, _apt(f"font_path / ${ENV_NOTO_FONT}"))
    if "twemoji" in styles:
        sources["twemoji"] = _find_twemoji(_resolve(twemoji_path, ENV_TWEMOJI, None), cache_root)

    # 2. Cache lookup, keyed by source contents and build parameters.
    version, entries = parse_emoji_test(emoji_test)
    key_parts = {"build": BUILD_VERSION, "style": style, "size": size, "emoji_version": version}
    key_parts.update({name: _fingerprint(path) for name, path in sources.items()})
    key = hashlib.sha256(json.dumps(key_parts, sort_keys=True).encode()).hexdigest()[:16]
    target = cache_root / "emoji" / f"{style}-{size}px-emoji{version}-{key}"
    if target.exists() and not rebuild:
        return datasets.load_from_disk(str(target))

    # 3. Render images of every emoji-test entry the sources have.
    keywords = load_cldr_keywords(cldr)
    rows: list[_Row] = []
    if "noto" in styles:
        rows += _noto_rows(sources["noto"], entries, size)
    if "twemoji" in styles:
        rows += _twemoji_rows(sources["twemoji"], entries, size)

    # 4. Captions, bases and splits.
    fq_by_stripped = {strip_vs(e.sequence): e.sequence for e in entries}
    bases = []
    for row in rows:
        stripped = strip_vs(row.entry.sequence)
        base = base_sequence(row.entry.sequence)
        bases.append(format_sequence(fq_by_stripped.get(base, base)))
        # Fall back to the base's keywords for variants CLDR does not list.
        row.keywords = keywords.get(stripped) or keywords.get(base, [])
    splits = assign_splits(rows, bases, second_style="twemoji" if style == "both" else None)

    columns: dict[str, dict[str, list]] = {}
    for row, base, split in zip(rows, bases, splits):
        if split is None:
            continue
        col = columns.setdefault(split, {k: [] for k in _features()})
        col["image"].append({"bytes": row.png, "path": None})
        col["text"].append(row.entry.name.lower())
        col["keywords"].append(list(row.keywords))
        col["group"].append(row.entry.group)
        col["subgroup"].append(row.entry.subgroup)
        col["sequence"].append(format_sequence(row.entry.sequence))
        col["base"].append(base)
        col["style"].append(row.style)

    # 5. Assemble and save atomically (build in a temp folder, then rename).
    description = f"Emoji images ({', '.join(styles)}) at {size}px, Unicode emoji {version}; names from emoji-test.txt, keywords from CLDR."
    licence = " AND ".join(LICENCES[s] for s in styles)
    split_names = ["train", "validation", "heldout_variants"] + (["heldout_style"] if style == "both" else [])
    dsd = datasets.DatasetDict()
    for split in split_names:
        info = datasets.DatasetInfo(description=description, license=licence, features=_features())
        data = columns.get(split, {k: [] for k in _features()})
        dsd[split] = datasets.Dataset.from_dict(data, features=_features(), info=info, split=split)
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
    return datasets.load_from_disk(str(target))


# ----------------------------------------------------------------------------- captions


def emoji_caption(example: dict, rng, keyword_prob: float = 0.5, max_keywords: int = 2) -> str:
    """Sample a training caption from an example's name and CLDR keywords.

    With probability `1 - keyword_prob` the caption is the name alone ("mushroom");
    otherwise the name followed by 1..`max_keywords` keywords, in random order, that
    are not already part of the name: "mushroom, toadstool",
    "woman cook: medium-dark skin tone, chef". Without such keywords it is the name.

    `rng` is a `random.Random` or a `numpy.random.Generator` (only `rng.random()` is
    used), so captions are reproducible given the generator's seed.
    """
    text = example["text"]
    extra = [k for k in dict.fromkeys(example.get("keywords") or []) if k and k not in text]
    if not extra or max_keywords < 1 or rng.random() >= keyword_prob:
        return text
    n = 1 + int(rng.random() * min(max_keywords, len(extra)))
    extra = sorted(extra, key=lambda _: rng.random())[:n]
    return ", ".join([text, *extra])

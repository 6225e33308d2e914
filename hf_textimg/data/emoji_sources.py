"""The four artwork styles of the Emoji set: where each comes from, how its files map to
code-point sequences, and how its images are rendered.

| style      | package (pinned)                             | files                                   | licence      |
|------------|----------------------------------------------|-----------------------------------------|--------------|
| `noto`     | Debian `fonts-noto-color-emoji`              | CBDT/CBLC colour bitmaps of the font    | OFL-1.1      |
| `twemoji`  | npm `@twemoji/svg@15.0.0`                    | `<hex-hex>.svg`                         | CC-BY-4.0    |
| `openmoji` | npm `openmoji@17.0.0`                        | `color/svg/<HEX-HEX>.svg` + openmoji.json | CC-BY-SA-4.0 |
| `fluent`   | npm `fluentui-emoji@1.3.0`                   | `icons/flat/<name>[-<skin tone>].svg`   | MIT          |

npm packages are fetched once with `npm pack NAME@VERSION` into `<cache>/sources/` (see
`npm_pack_command`); the build reads only the members it needs from the tarball (a
`tarfile` member filter), so nothing is unpacked to disk. Twemoji comes from `@twemoji/svg`
rather than the 64 px PNGs of `emoji-datasource-twitter`: SVG renders at 128 px without
upscaling a bitmap, and the package is 1.5 MB instead of 62 MB. Its version (15.0) is the
Unicode emoji version Debian's `unicode-data` describes.

Each reader yields `StyleFile`s, one per artwork file, with the code-point sequence the
file claims (or None when its name maps to none); `emoji.build_emoji_dataset` checks every
claim against emoji-test.txt and counts the files that match no sequence.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

__all__ = ["StyleSource", "STYLE_SOURCES", "STYLES", "StyleFile", "npm_pack_command", "read_style_files", "render_svg", "to_square_rgb"]

SKIN_TONE_NAMES = {0x1F3FB: "light", 0x1F3FC: "medium-light", 0x1F3FD: "medium", 0x1F3FE: "medium-dark", 0x1F3FF: "dark"}
VS16 = 0xFE0F


@dataclass(frozen=True)
class StyleSource:
    """Where one style's artwork comes from and what its licence asks."""

    style: str
    title: str  # the artwork's own name
    package: str  # npm package name, or the Debian package for noto
    version: str | None  # pinned npm version; None for the Debian font (its version is whatever is installed)
    licence: str  # SPDX id, as the data set's info and the model cards give it
    licence_name: str
    attribution: str
    homepage: str
    # White margin added on each side of the artwork's frame (its bitmap or SVG viewBox), as a
    # fraction of the frame's side, so the four styles draw an emoji at about the same size.
    # Measured on 400 emoji all four packages draw (docs/emoji.md, "Scale"): the median artwork
    # spans 89% of the final square for Noto; see each value's comment.
    margin: float
    env: str | None = None  # environment variable that can point at the tarball or its unpacked folder

    @property
    def npm_spec(self) -> str:
        return f"{self.package}@{self.version}"

    @property
    def tarball_name(self) -> str:
        """The file `npm pack` writes: "@twemoji/svg@15.0.0" -> "twemoji-svg-15.0.0.tgz"."""
        return f"{self.package.lstrip('@').replace('/', '-')}-{self.version}.tgz"


STYLE_SOURCES: dict[str, StyleSource] = {
    "noto": StyleSource(
        "noto", "Noto Color Emoji", "fonts-noto-color-emoji", None, "OFL-1.1", "SIL Open Font License 1.1",
        "© Google LLC", "https://github.com/googlefonts/noto-emoji",
        margin=0.0,  # the reference: the font's bitmaps already leave ~5% a side
    ),
    "twemoji": StyleSource(
        "twemoji", "Twemoji", "@twemoji/svg", "15.0.0", "CC-BY-4.0", "Creative Commons Attribution 4.0 (graphics)",
        "© Twitter, Inc. and other contributors (Twemoji, maintained by jdecked)", "https://github.com/jdecked/twemoji",
        margin=0.0625, env="HF_TEXTIMG_TWEMOJI",  # art fills its 36x36 viewBox edge to edge: 91% with this margin
    ),
    "openmoji": StyleSource(
        "openmoji", "OpenMoji", "openmoji", "17.0.0", "CC-BY-SA-4.0", "Creative Commons Attribution-ShareAlike 4.0",
        "OpenMoji, the open-source emoji and icon project (openmoji.org)", "https://openmoji.org",
        # Most art sits inside ~10..62 of its 72 viewBox (median 75% of the frame, Noto 89%), but
        # flags and wide objects use the full width: cropping to Noto's scale would cut the edge off
        # 1 in 4 images, so the frame is kept whole and OpenMoji draws ~15% smaller.
        margin=0.0, env="HF_TEXTIMG_OPENMOJI",
    ),
    "fluent": StyleSource(
        "fluent", "Fluent Emoji (flat)", "fluentui-emoji", "1.3.0", "MIT", "MIT License",
        "© Microsoft Corporation (Fluent Emoji; npm packaging by Mohammad Abu Mattar)", "https://github.com/microsoft/fluentui-emoji",
        margin=0.0, env="HF_TEXTIMG_FLUENT",  # art spans ~2..30 of its 32 viewBox: 88%, like Noto
    ),
}
STYLES = tuple(STYLE_SOURCES)


@dataclass
class StyleFile:
    """One artwork file of a style."""

    name: str  # member path inside the package ("package/1f980.svg") or glyph name (noto)
    sequence: tuple[int, ...] | None  # the code points the file claims, FE0F removed; None: its name maps to none
    image_id: str  # identifies the artwork: identical files share an id
    render: Callable[[int], Image.Image]  # size -> RGB image, composited on white, square


def npm_pack_command(style: str, sources_dir: str | os.PathLike) -> str:
    src = STYLE_SOURCES[style]
    return f"mkdir -p {sources_dir} && cd {sources_dir} && npm pack {src.npm_spec}"


def package_version(pack: Path) -> str | None:
    """The "version" of an npm tarball's or folder's package.json (None when absent)."""
    for _, data in iter_members(pack, re.compile(r"^(?:package/)?package\.json$")):
        return json.loads(data).get("version")
    return None


# ----------------------------------------------------------------------------- images


def to_square_rgb(rgba: Image.Image, size: int, margin: float = 0.0) -> Image.Image:
    """Composite onto white, pad to a centred square plus `margin` (fraction of the square's side) a side,
    then BOX-resize (area average) to `size`. A bitmap is only ever shrunk: the caller passes one at least
    `size` px (Noto's are 136x128)."""
    rgba = rgba.convert("RGBA")
    side = max(rgba.size)
    canvas_side = max(1, round(side * (1 + 2 * margin)))
    canvas = Image.new("RGBA", (canvas_side, canvas_side), (255, 255, 255, 255))
    offset = ((canvas_side - rgba.width) // 2, (canvas_side - rgba.height) // 2)
    canvas.alpha_composite(rgba, offset)  # paste on white; art beyond a negative margin is cut
    return canvas.convert("RGB").resize((size, size), Image.Resampling.BOX)


def render_svg(svg: bytes, size: int, margin: float = 0.0, supersample: int = 2) -> Image.Image:
    """Rasterise an SVG at `supersample` x `size` (frame + margins), composite on white, area-resize to `size`.

    resvg (the `resvg-py` wheel) rather than cairosvg: it ships as one self-contained wheel (no
    system libcairo, so `pip install` is the whole set-up on any machine), implements the static
    SVG subset these packages use (gradients, masks, clip paths) well, and renders an emoji in
    about 1-8 ms.
    """
    import resvg_py

    target = supersample * size
    frame = max(1, round(target / (1 + 2 * margin)))  # pixels of the artwork's own frame
    text = svg.decode("utf-8")
    png = resvg_py.svg_to_bytes(svg_string=text, width=frame, skip_system_fonts=True)
    rgba = Image.open(io.BytesIO(bytes(png)))
    if rgba.height > rgba.width:  # a tall viewBox: fit its height to the frame instead
        png = resvg_py.svg_to_bytes(svg_string=text, width=max(1, round(frame * rgba.width / rgba.height)), skip_system_fonts=True)
        rgba = Image.open(io.BytesIO(bytes(png)))
    rgba = rgba.convert("RGBA")
    canvas = Image.new("RGBA", (target, target), (255, 255, 255, 255))
    canvas.alpha_composite(_centre_crop(rgba, target), ((target - min(rgba.width, target)) // 2, (target - min(rgba.height, target)) // 2))
    return canvas.convert("RGB").resize((size, size), Image.Resampling.BOX)


def _centre_crop(img: Image.Image, side: int) -> Image.Image:
    """The centre `side` x `side` part of an image larger than that (a negative margin crops)."""
    if img.width <= side and img.height <= side:
        return img
    left, top = max(0, (img.width - side) // 2), max(0, (img.height - side) // 2)
    return img.crop((left, top, left + min(side, img.width), top + min(side, img.height)))


def _svg_file(name: str, sequence, data: bytes, style: str) -> StyleFile:
    margin = STYLE_SOURCES[style].margin
    return StyleFile(name, sequence, f"{style}:{hashlib.sha1(data).hexdigest()}", lambda size: render_svg(data, size, margin))


# ----------------------------------------------------------------------------- packages


def iter_members(pack: Path, pattern: re.Pattern) -> Iterator[tuple[str, bytes]]:
    """(path, bytes) of the files of an npm tarball (or its unpacked folder) whose path matches `pattern`.

    Only matching members are read; the tarball is streamed, never unpacked to disk.
    """
    if pack.is_dir():
        for file in sorted(p for p in pack.rglob("*") if p.is_file()):
            rel = file.relative_to(pack).as_posix()
            if pattern.search(rel):
                yield rel, file.read_bytes()
        return
    with tarfile.open(pack, "r:*") as tar:
        for member in tar:
            if member.isfile() and pattern.search(member.name):
                yield member.name, tar.extractfile(member).read()


def _hex_sequence(text: str) -> tuple[int, ...] | None:
    try:
        return tuple(cp for cp in (int(part, 16) for part in re.split(r"[-_ ]", text)) if cp != VS16)
    except ValueError:
        return None


def read_twemoji(pack: Path, entries) -> Iterator[StyleFile]:
    """`@twemoji/svg`: one `<hex>-<hex>.svg` per emoji at the package root, FE0F mostly left out."""
    for name, data in iter_members(pack, re.compile(r"^(?:package/)?[0-9a-f][0-9a-f-]*\.svg$")):
        yield _svg_file(name, _hex_sequence(Path(name).stem), data, "twemoji")


def read_openmoji(pack: Path, entries) -> Iterator[StyleFile]:
    """`openmoji`: `color/svg/<HEX-HEX>.svg`; `data/openmoji.json` marks OpenMoji's own (non-Unicode)
    extras, which are left out here and never counted as unmatched."""
    files = dict(iter_members(pack, re.compile(r"(?:^|/)(?:color/svg/[0-9A-Fa-f-]+\.svg|data/openmoji\.json)$")))
    meta_name = next((n for n in files if n.endswith("data/openmoji.json")), None)
    extras = set()
    if meta_name is not None:
        extras = {m["hexcode"].upper() for m in json.loads(files.pop(meta_name)) if m.get("group") == "extras-openmoji"}
    for name in sorted(files):
        stem = Path(name).stem.upper()
        if stem not in extras:
            yield _svg_file(name, _hex_sequence(stem), files[name], "openmoji")


def read_fluent(pack: Path, entries) -> Iterator[StyleFile]:
    """`fluentui-emoji`: `icons/flat/<name>.svg`, named by the CLDR name (see `fluent_name_index`)."""
    index = fluent_name_index(entries)
    for name, data in iter_members(pack, re.compile(r"(?:^|/)icons/flat/[^/]+\.svg$")):
        yield _svg_file(name, fluent_sequence(Path(name).stem, index), data, "fluent")


# --------------------------------------------------------------------- fluent file names

# Fluent file stems whose CLDR name differs beyond spelling (renamed in CLDR, or Fluent's own
# word order). Each maps to the emoji-test.txt name; skin-tone suffixes are handled after.
FLUENT_ALIASES = {
    "keycap-hashtag": "keycap: #",
    "keycap-asterisk": "keycap: *",
    "hugging-face": "smiling face with open hands",
    "knocked-out-face": "face with crossed-out eyes",
    "pouting-face": "enraged face",
    "red-triangle": "red triangle pointed up",
    "stuffedbread-flat": "stuffed flatbread",
    "person-blonde-hair": "person: blond hair",
    "man-blonde-hair": "man: blond hair",
    "woman-blonde-hair": "woman: blond hair",
    "person-deaf": "deaf person",
    "man-deaf": "deaf man",
    "woman-deaf": "deaf woman",
    "person-merpeople": "merperson",
    "man-merpeople": "merman",
    "woman-merpeople": "mermaid",
    "person-elf": "elf",
    "person-fairy": "fairy",
    "person-genie": "genie",
    "person-mage": "mage",
    "person-vampire": "vampire",
    "person-zombie": "zombie",
    "person-superhero": "superhero",
    "person-supervillain": "supervillain",
    "person-with-bunny-ears": "people with bunny ears",
    "man-with-bunny-ears": "men with bunny ears",
    "woman-with-bunny-ears": "women with bunny ears",
    "person-wrestling": "people wrestling",
    "man-wrestling": "men wrestling",
    "woman-wrestling": "women wrestling",
}


def slug(name: str) -> str:
    """"Woman Cook: Dark Skin Tone" -> "woman-cook-dark-skin-tone"; "eight o’clock" -> "eight-oclock"."""
    name = "".join(ch for ch in unicodedata.normalize("NFKD", name) if not unicodedata.combining(ch))
    name = name.lower().replace("’", "").replace("'", "")
    return re.sub(r"[^a-z0-9]+", "-", name).strip("-")


@dataclass
class FluentIndex:
    by_slug: dict[str, tuple[int, ...]]  # slug of a name -> sequence (FE0F removed); ambiguous slugs left out
    by_name: dict[str, tuple[int, ...]]  # exact lowercase emoji-test name -> sequence
    toned: dict[tuple[tuple[int, ...], int], tuple[int, ...]]  # (sequence without tones, tone) -> sequence


def fluent_name_index(entries) -> FluentIndex:
    by_slug: dict[str, tuple[int, ...] | None] = {}
    by_name, toned = {}, {}
    for entry in entries:
        seq = tuple(cp for cp in entry.sequence if cp != VS16)
        key = slug(entry.name)
        by_slug[key] = None if key in by_slug and by_slug[key] != seq else seq  # None marks an ambiguous slug
        by_name[entry.name.lower()] = seq
        tones = {cp for cp in seq if cp in SKIN_TONE_NAMES}
        if len(seq) > 1 and len(tones) == 1:
            toned[(tuple(cp for cp in seq if cp not in SKIN_TONE_NAMES), tones.pop())] = seq
    return FluentIndex({k: v for k, v in by_slug.items() if v is not None}, by_name, toned)


def _fluent_base(stem: str, index: FluentIndex) -> tuple[int, ...] | None:
    if stem in FLUENT_ALIASES:
        return index.by_name.get(FLUENT_ALIASES[stem])
    return index.by_slug.get(stem)


def fluent_sequence(stem: str, index: FluentIndex) -> tuple[int, ...] | None:
    """The sequence a Fluent file stem names: the whole stem as a name ("vertical-traffic-light"), else
    "<name>-default" (the toneless emoji), else "<name>-<tone>" with tone light / medium-light / medium /
    medium-dark / dark, e.g. "man-bald-dark" -> "man: dark skin tone, bald"."""
    found = _fluent_base(stem, index)
    if found is not None:
        return found
    if stem.endswith("-default"):
        return _fluent_base(stem.removesuffix("-default"), index)
    for tone, tone_name in sorted(SKIN_TONE_NAMES.items(), key=lambda kv: -len(kv[1])):  # "medium-dark" before "dark"
        if stem.endswith("-" + tone_name):
            base = _fluent_base(stem.removesuffix("-" + tone_name), index)
            return None if base is None else index.toned.get((base, tone))
    return None


# ----------------------------------------------------------------------------- noto


def noto_glyph_sequences(font) -> dict[tuple[int, ...], str]:
    """Map code-point sequences (no FE0F) -> glyph name, from the cmap plus all GSUB ligatures.

    The font's right-to-left (reversed) ligatures are included here too; they match no
    emoji-test.txt line (or a different one, by their own sequence) and are counted as unmatched.
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
                    if VS16 not in seq:  # the font also lists each ligature without FE0F, which is what we look up
                        seq_to_glyph.setdefault(seq, lig.LigGlyph)
    return seq_to_glyph


def read_noto(font_path: Path, entries) -> Iterator[StyleFile]:
    """One StyleFile per colour bitmap glyph reachable by a sequence. A glyph that several sequences reach
    (a flag drawn for two territories, an emoji and its mirrored ligature) is yielded once per sequence with
    one image id, so identical artwork is known as such."""
    from fontTools.ttLib import TTFont

    from .emoji import APT_HINT, EmojiSourceError

    font = TTFont(font_path, lazy=True)
    if "CBDT" not in font or "CBLC" not in font:
        raise EmojiSourceError(f"{font_path} has no CBDT/CBLC colour bitmaps; expected NotoColorEmoji.ttf from `{APT_HINT}`.")
    strikes = font["CBLC"].strikes
    best = max(range(len(strikes)), key=lambda i: strikes[i].bitmapSizeTable.ppemY)  # the largest (136x128 PNGs)
    bitmaps = font["CBDT"].strikeData[best]
    margin = STYLE_SOURCES["noto"].margin

    def renderer(glyph: str):
        def render(size: int) -> Image.Image:
            with Image.open(io.BytesIO(bitmaps[glyph].imageData)) as src:
                return to_square_rgb(src, size, margin)

        return render

    for seq, glyph in sorted(noto_glyph_sequences(font).items()):
        if glyph in bitmaps:
            yield StyleFile(glyph, seq, f"noto:{glyph}", renderer(glyph))


READERS = {"twemoji": read_twemoji, "openmoji": read_openmoji, "fluent": read_fluent}


def read_style_files(style: str, source: Path, entries) -> Iterator[StyleFile]:
    """The artwork files of `style` found in `source` (the font for noto, an npm tarball or folder otherwise)."""
    if style == "noto":
        return read_noto(source, entries)
    return READERS[style](source, entries)

"""Small stand-ins for the Emoji set's sources, so every style builds without network or the real packages.

- `tests/data/emoji/emoji-test.txt`: the real file cut to 30 emoji (chosen so each split rule selects some).
- `tests/data/emoji/cldr/`: the CLDR English annotations cut to those emoji.
- `tests/data/emoji/NotoColorEmoji-subset.ttf`: Debian's font subset to those emoji with fontTools
  (bitmaps re-encoded with 32 colours to keep it small; OFL-1.1).
- twemoji / openmoji / fluent: npm-like tarballs written here, with one simple SVG per emoji (a
  coloured disc and a square whose colour and place depend on the emoji, drawn differently per style)
  under each package's own file naming, plus files that must not match (newer emoji, extras).
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

DATA = Path(__file__).parent / "data" / "emoji"
EMOJI_TEST = DATA / "emoji-test.txt"
CLDR_DIR = DATA / "cldr"
NOTO_FONT = DATA / "NotoColorEmoji-subset.ttf"

# (sequence without FE0F, fluent file stem) of the emoji the fixture packages draw.
EMOJI = [
    ("1F980", "crab"), ("1F344", "mushroom"), ("1F34E", "red-apple"), ("1F600", "grinning-face"),
    ("1F44D", "thumbs-up-default"), ("1F44D 1F3FB", "thumbs-up-light"), ("1F44D 1F3FC", "thumbs-up-medium-light"),
    ("1F44D 1F3FD", "thumbs-up-medium"), ("1F44D 1F3FE", "thumbs-up-medium-dark"), ("1F44D 1F3FF", "thumbs-up-dark"),
    ("1F90F", "pinching-hand-default"), ("1F90F 1F3FB", "pinching-hand-light"), ("1F90F 1F3FC", "pinching-hand-medium-light"),
    ("1F90F 1F3FD", "pinching-hand-medium"), ("1F90F 1F3FE", "pinching-hand-medium-dark"), ("1F90F 1F3FF", "pinching-hand-dark"),
    ("1F1EB 1F1F7", None), ("0023 20E3", "keycap-hashtag"), ("1F642", "slightly-smiling-face"), ("1F9D1", "person-default"),
    ("1F468", "man-default"), ("1F469", "woman-default"), ("1F634", "sleeping-face"), ("1F621", "pouting-face"),
    ("1F44C", "ok-hand-default"), ("1F44C 1F3FD", "ok-hand-medium"), ("1F9D1 200D 1F373", "cook-default"),
    ("1F469 200D 1F373", "woman-cook-default"), ("1F469 1F3FE 200D 1F373", "woman-cook-medium-dark"), ("1F3FB", "light-skin-tone"),
]
# Files each package has that match no emoji-test.txt line of the fixture.
UNMATCHED = {"twemoji": ["1fabf.svg", "1f1e6.svg"], "openmoji": ["1FABF.svg", "1F1E6.svg"], "fluent": ["lime.svg", "vertical-traffic-light.svg"]}
OPENMOJI_EXTRA = "E000"  # an OpenMoji-only icon (private use area), dropped without being counted


def emoji_svg(index: int, style: str) -> bytes:
    """A distinct picture per emoji (disc colour, square colour and place) and per style (frame, shape)."""
    hue = (index * 47) % 360
    view = {"twemoji": 36, "openmoji": 72, "fluent": 32}[style]
    r = view * {"twemoji": 0.5, "openmoji": 0.38, "fluent": 0.44}[style]
    x, y = (index % 3) * view / 3, (index // 3 % 3) * view / 3
    stroke = '<rect x="0" y="0" width="100%" height="100%" fill="none" stroke="#222" stroke-width="2"/>' if style == "openmoji" else ""
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {view} {view}">'
        f'<circle cx="{view / 2}" cy="{view / 2}" r="{r}" fill="hsl({hue}, 80%, 55%)"/>'
        f'<rect x="{x}" y="{y}" width="{view / 3}" height="{view / 3}" fill="hsl({(hue + 180) % 360}, 70%, 30%)"/>{stroke}</svg>'
    ).encode()


def _write_tarball(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _package_json(name: str, version: str) -> bytes:
    return json.dumps({"name": name, "version": version}).encode()


def write_fixture_packages(folder: Path) -> dict[str, Path]:
    """Write fixture npm tarballs for twemoji, openmoji and fluent into `folder`; return style -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    tw = {"package.json": _package_json("@twemoji/svg", "15.0.0")}
    om = {"package.json": _package_json("openmoji", "17.0.0")}
    fl = {"package.json": _package_json("fluentui-emoji", "1.3.0")}
    meta = [{"hexcode": OPENMOJI_EXTRA, "group": "extras-openmoji"}]
    for i, (seq, stem) in enumerate(EMOJI):
        tw["-".join(cp.lower().lstrip("0") for cp in seq.split()) + ".svg"] = emoji_svg(i, "twemoji")
        hexcode = "-".join(seq.split()).replace("0023-20E3", "0023-FE0F-20E3")  # OpenMoji keeps FE0F in names
        om[f"color/svg/{hexcode}.svg"] = emoji_svg(i, "openmoji")
        meta.append({"hexcode": hexcode, "group": "test"})
        if stem is not None:  # Fluent draws no flags
            fl[f"icons/flat/{stem}.svg"] = emoji_svg(i, "fluent")
    om[f"color/svg/{OPENMOJI_EXTRA}.svg"] = emoji_svg(99, "openmoji")
    om["data/openmoji.json"] = json.dumps(meta).encode()
    for style, files in (("twemoji", tw), ("openmoji", om), ("fluent", fl)):
        prefix = "color/svg/" if style == "openmoji" else "icons/flat/" if style == "fluent" else ""
        for k, name in enumerate(UNMATCHED[style]):
            files[prefix + name] = emoji_svg(50 + k, style)
    return {
        "twemoji": _write_tarball(folder / "twemoji-svg-15.0.0.tgz", tw),
        "openmoji": _write_tarball(folder / "openmoji-17.0.0.tgz", om),
        "fluent": _write_tarball(folder / "fluentui-emoji-1.3.0.tgz", fl),
    }


def fixture_kwargs(folder: Path) -> dict:
    """`build_emoji_dataset` keyword arguments that point every source at the fixture."""
    return {"font_path": NOTO_FONT, "emoji_test_path": EMOJI_TEST, "cldr_dir": CLDR_DIR, "source_paths": write_fixture_packages(folder)}


def set_fixture_env(monkeypatch, folder: Path) -> None:
    """The same through environment variables, for code that calls the builder with defaults (training)."""
    paths = write_fixture_packages(folder / "sources")
    monkeypatch.setenv("HF_TEXTIMG_NOTO_FONT", str(NOTO_FONT))
    monkeypatch.setenv("HF_TEXTIMG_EMOJI_TEST", str(EMOJI_TEST))
    monkeypatch.setenv("HF_TEXTIMG_CLDR_DIR", str(CLDR_DIR))
    monkeypatch.setenv("HF_TEXTIMG_CACHE", str(folder / "cache"))
    for style, env in (("twemoji", "HF_TEXTIMG_TWEMOJI"), ("openmoji", "HF_TEXTIMG_OPENMOJI"), ("fluent", "HF_TEXTIMG_FLUENT")):
        monkeypatch.setenv(env, str(paths[style]))

import glob
import os
import random
from pathlib import Path

import numpy as np
import pytest

import hf_textimg.data.emoji as emoji
from hf_textimg.data.emoji import EmojiSourceError, base_sequence, build_emoji_dataset, emoji_caption

SOURCES = [emoji.DEFAULT_NOTO_FONT, emoji.DEFAULT_EMOJI_TEST, emoji.DEFAULT_CLDR_DIR]
pytestmark = pytest.mark.skipif(
    not all(Path(p).exists() for p in SOURCES), reason=f"needs `{emoji.APT_HINT}`"
)
SIZE = 32


def _seq(text):
    return tuple(int(cp, 16) for cp in text.split())


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("emoji_cache")


@pytest.fixture(scope="module")
def noto(cache):
    return build_emoji_dataset(SIZE, style="noto", cache_dir=cache)


@pytest.fixture(scope="module")
def rows(noto):
    """sequence -> (split, row without image) over all splits."""
    out = {}
    for split, ds in noto.items():
        for row in ds.remove_columns("image"):
            assert row["sequence"] not in out, f"{row['sequence']} appears twice"
            out[row["sequence"]] = (split, row)
    return out


def _image(noto, rows, sequence):
    split, _ = rows[sequence]
    ds = noto[split]
    return np.asarray(ds[ds["sequence"].index(sequence)]["image"])


def test_count_and_names(noto):
    assert set(noto) == {"train", "validation", "heldout_variants"}
    total = sum(len(ds) for ds in noto.values())
    assert total >= 3500
    for ds in noto.values():
        for text in ds["text"]:
            assert text and text == text.lower()
        assert set(ds["style"]) <= {"noto"}
    assert noto["train"].info.license == "OFL-1.1"


def test_known_names(rows):
    assert rows["1F344"][1]["text"] == "mushroom"
    assert "toadstool" in rows["1F344"][1]["keywords"]
    assert rows["1F469 1F3FE 200D 1F373"][1]["text"] == "woman cook: medium-dark skin tone"
    assert "medium skin tone" in rows["1F44D 1F3FD"][1]["text"]  # thumbs up
    assert rows["1F1EB 1F1F7"][1]["text"] == "flag: france"
    assert rows["0023 FE0F 20E3"][1]["text"] == "keycap: #"
    # The font's mirrored (right-to-left) ZWJ ligatures must not rename forward sequences.
    assert rows["1F3C3 200D 2640 FE0F"][1]["text"] == "woman running"
    flags = [r for _, r in rows.values() if r["subgroup"] == "country-flag"]
    assert len(flags) > 200 and all(r["text"].startswith("flag: ") for r in flags)
    tones = [r for _, r in rows.values() if emoji.has_skin_tone(_seq(r["sequence"]))]
    assert len(tones) > 1500 and all("skin tone" in r["text"] for r in tones)


def test_images_match_names(noto, rows):
    def mean_colour(img):  # over non-white pixels
        ink = img[(img < 235).any(-1)].astype(float)
        return ink.mean(0)

    r, g, b = mean_colour(_image(noto, rows, "1F344"))  # mushroom: red cap
    assert r > g + 30 and r > b + 30
    france = _image(noto, rows, "1F1EB 1F1F7").astype(float)  # blue | white | red
    left, right = france[8:24, 3:9].mean((0, 1)), france[8:24, -9:-3].mean((0, 1))
    assert left[2] > left[0] + 50 and right[0] > right[2] + 50
    # Mirror-image pairs keep their own artwork: "light skin tone, dark skin tone" has
    # the light-skinned person (brighter face) on the left, its mirror on the right.
    half = SIZE // 2
    pairs = [("1F9D1 1F3FB 200D 1F91D 200D 1F9D1 1F3FF", "1F9D1 1F3FF 200D 1F91D 200D 1F9D1 1F3FB"),
             ("1F469 1F3FB 200D 1F91D 200D 1F468 1F3FF", "1F469 1F3FF 200D 1F91D 200D 1F468 1F3FB")]
    for light_left, dark_left in pairs:
        img = _image(noto, rows, light_left).astype(float)
        assert img[:half, :half].mean() > img[:half, half:].mean() + 5
        img = _image(noto, rows, dark_left).astype(float)
        assert img[:half, :half].mean() + 5 < img[:half, half:].mean()


def test_images_rgb_square_white_corners(noto):
    for ds in noto.values():
        for img in ds.select(range(0, len(ds), 7))["image"]:
            assert img.mode == "RGB" and img.size == (SIZE, SIZE)
            arr = np.asarray(img)
            corners = arr[[0, 0, -1, -1], [0, -1, 0, -1]]
            assert corners.min() >= 250


def test_splits_by_base(noto, rows):
    train, val, held = (set(noto[s]["base"]) for s in ("train", "validation", "heldout_variants"))
    assert not train & val
    assert 0.05 < len(val) / len(train | val) < 0.15
    assert 0 < len(noto["heldout_variants"]) < 0.05 * len(noto["train"])
    assert held <= train  # other variants of each held-out base are in train
    train_seqs = set(noto["train"]["sequence"])
    held_per_base = {}
    for row in noto["heldout_variants"].remove_columns("image"):
        assert row["sequence"] not in train_seqs
        assert emoji.has_skin_tone(_seq(row["sequence"]))
        held_per_base.setdefault(row["base"], []).append(row["sequence"])
    assert all(len(v) == 1 for v in held_per_base.values())
    # Variants of one emoji share a base: all cooks (any gender, any tone) are one base.
    cooks = {rows[s][1]["base"] for s in ("1F9D1 200D 1F373", "1F469 200D 1F373", "1F468 1F3FF 200D 1F373")}
    assert cooks == {"1F9D1 200D 1F373"}


def test_base_sequence():
    assert base_sequence(_seq("1F469 1F3FE 200D 1F373")) == _seq("1F9D1 200D 1F373")
    assert base_sequence(_seq("1F3C3 1F3FB 200D 2640 FE0F")) == _seq("1F3C3")
    assert base_sequence(_seq("1F469 200D 2764 FE0F 200D 1F48B 200D 1F468")) == _seq("1F48F")
    assert base_sequence(_seq("2640 FE0F")) == _seq("2640")  # female sign is its own base
    assert base_sequence(_seq("1F3FB")) == _seq("1F3FB")  # skin-tone swatch too


def test_deterministic_and_cached(noto, cache, tmp_path, monkeypatch):
    other = build_emoji_dataset(SIZE, style="noto", cache_dir=tmp_path)  # a second cold build
    for split in noto:
        assert noto[split].data.table.equals(other[split].data.table), split

    def no_rebuild(*args, **kwargs):
        raise AssertionError("cache miss: rebuilt instead of loading")

    monkeypatch.setattr(emoji, "_noto_rows", no_rebuild)
    again = build_emoji_dataset(SIZE, style="noto", cache_dir=cache)
    for split in noto:
        assert noto[split].data.table.equals(again[split].data.table), split
    with pytest.raises(AssertionError, match="cache miss"):  # another size is another cache entry
        build_emoji_dataset(16, style="noto", cache_dir=cache)


def test_missing_sources_name_the_package(tmp_path, monkeypatch):
    with pytest.raises(EmojiSourceError, match="fonts-noto-color-emoji") as err:
        build_emoji_dataset(cache_dir=tmp_path, font_path=tmp_path / "missing.ttf")
    assert isinstance(err.value, FileNotFoundError) and "apt-get install" in str(err.value)
    monkeypatch.setenv(emoji.ENV_EMOJI_TEST, str(tmp_path / "missing.txt"))
    with pytest.raises(EmojiSourceError, match="unicode-data"):
        build_emoji_dataset(cache_dir=tmp_path)
    monkeypatch.delenv(emoji.ENV_EMOJI_TEST)
    with pytest.raises(EmojiSourceError, match="unicode-cldr-core"):
        build_emoji_dataset(cache_dir=tmp_path, cldr_dir=tmp_path)
    with pytest.raises(EmojiSourceError, match="npm pack emoji-datasource-twitter"):
        build_emoji_dataset(style="twemoji", cache_dir=tmp_path, twemoji_path=tmp_path / "none.tgz")
    with pytest.raises(ValueError, match="style"):
        build_emoji_dataset(style="apple", cache_dir=tmp_path)


def test_emoji_caption():
    example = {"text": "mushroom", "keywords": ["mushroom", "toadstool"]}
    rng = random.Random(0)
    captions = {emoji_caption(example, rng) for _ in range(50)}
    assert captions == {"mushroom", "mushroom, toadstool"}
    assert emoji_caption(example, random.Random(0), keyword_prob=0.0) == "mushroom"
    assert emoji_caption({"text": "moose", "keywords": []}, np.random.default_rng(0), keyword_prob=1.0) == "moose"
    a = [emoji_caption(example, random.Random(3)) for _ in range(5)]
    assert a == [emoji_caption(example, random.Random(3)) for _ in range(5)]


def _twemoji_pack():
    if os.environ.get(emoji.ENV_TWEMOJI):
        return os.environ[emoji.ENV_TWEMOJI]
    found = sorted(glob.glob(str(emoji._default_cache_dir() / "sources" / "emoji-datasource-twitter-*.tgz")))
    return found[-1] if found else None


@pytest.fixture(scope="module")
def both(cache):
    pack = _twemoji_pack()
    if pack is None:
        pytest.skip(f"optional twemoji style: `{emoji.NPM_HINT}` into {emoji._default_cache_dir() / 'sources'}")
    return build_emoji_dataset(SIZE, style="both", cache_dir=cache, twemoji_path=pack)


def test_both_styles(both, noto):
    assert set(both) == {"train", "validation", "heldout_variants", "heldout_style"}
    assert both["train"].info.license == "OFL-1.1 AND CC-BY-4.0"
    twemoji_count = sum(ds["style"].count("twemoji") for ds in both.values())
    assert twemoji_count >= 3500
    # Noto rows keep the split they have in the noto-only build.
    noto_split = {s: split for split, ds in noto.items() for s in ds["sequence"]}
    for split, ds in both.items():
        for seq, style in zip(ds["sequence"], ds["style"]):
            if style == "noto":
                assert noto_split[seq] == split, seq
    # heldout_style: twemoji images of emoji whose noto images are in train.
    held = both["heldout_style"]
    assert set(held["style"]) == {"twemoji"} and len(held) > 100
    train_noto = {s for s, st in zip(both["train"]["sequence"], both["train"]["style"]) if st == "noto"}
    assert set(held["sequence"]) <= train_noto
    train_twemoji_bases = {b for b, st in zip(both["train"]["base"], both["train"]["style"]) if st == "twemoji"}
    assert not set(held["base"]) & train_twemoji_bases
    assert not set(both["train"]["base"]) & set(both["validation"]["base"])
    for img in held.select(range(0, len(held), 5))["image"]:
        assert img.mode == "RGB" and img.size == (SIZE, SIZE)
        assert np.asarray(img)[[0, 0, -1, -1], [0, -1, 0, -1]].min() >= 250
    texts = {(t, st) for ds in both.values() for t, st in zip(ds["text"], ds["style"])}
    assert ("mushroom", "twemoji") in texts and ("flag: france", "twemoji") in texts

"""The Emoji set: every style from small fixtures (always), Noto and the npm packages for real (when installed)."""

import glob
import hashlib
import logging
import random
from pathlib import Path

import numpy as np
import pytest
from emoji_fixture import EMOJI, EMOJI_TEST, OPENMOJI_EXTRA, emoji_svg, fixture_kwargs

import hf_textimg.data.emoji as emoji
from hf_textimg.data.emoji import (
    EmojiSourceError,
    base_sequence,
    build_emoji_dataset,
    caption_alternatives,
    emoji_build_report,
    emoji_caption,
    with_caption_style,
)
from hf_textimg.data.emoji_sources import STYLE_SOURCES, fluent_name_index, fluent_sequence, render_svg

ALL_STYLES = ["noto", "twemoji", "openmoji", "fluent"]
SIZE = 32


def _seq(text):
    return tuple(int(cp, 16) for cp in text.split())


def _rows(dsd):
    """(style, sequence) -> (split, row without image) over all splits."""
    out = {}
    for split, ds in dsd.items():
        for row in ds.remove_columns("image"):
            key = (row["style"], row["sequence"])
            assert key not in out, f"{key} appears twice"
            out[key] = (split, row)
    return out


# ----------------------------------------------------------------------------- fixture builds


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("emoji_fixture")


@pytest.fixture(scope="module")
def fixture_set(fixture_dir):
    return build_emoji_dataset(SIZE, styles=ALL_STYLES, cache_dir=fixture_dir / "cache", **fixture_kwargs(fixture_dir / "sources"))


def test_every_style_builds_from_the_fixture(fixture_set, fixture_dir):
    assert set(fixture_set) == {"train", "validation", "heldout_variants", "heldout_style"}
    rows = _rows(fixture_set)
    counts = {style: sum(1 for s, _ in rows if s == style) for style in ALL_STYLES}
    assert counts == {"noto": 30, "twemoji": 30, "openmoji": 30, "fluent": 29}  # Fluent draws no flags
    report = emoji_build_report(fixture_set)
    for style in ("twemoji", "openmoji", "fluent"):
        r = report["styles"][style]
        # The two planted files (a newer emoji, a lone regional indicator or a name CLDR lacks) are counted;
        # OpenMoji's own extra icon is dropped without being counted.
        assert (r["unmatched"], r["files"], r["images"]) == (2, counts[style] + 2, counts[style]), style
        assert r["version"] == STYLE_SOURCES[style].version
        tarball = fixture_dir / "sources" / STYLE_SOURCES[style].tarball_name
        assert r["sha256"] == hashlib.sha256(tarball.read_bytes()).hexdigest()
    assert not any(OPENMOJI_EXTRA in name for name in report["styles"]["openmoji"]["unmatched_examples"])
    assert report["styles"]["noto"]["images"] == 30 and report["skipped_styles"] == {}
    assert fixture_set["train"].info.license == "OFL-1.1 AND CC-BY-4.0 AND CC-BY-SA-4.0 AND MIT"
    assert "Creative Commons Attribution-ShareAlike 4.0, https://openmoji.org" in fixture_set["train"].info.citation


def test_fixture_names_captions_and_columns(fixture_set):
    assert set(fixture_set["train"].column_names) == {"image", "text", "name", "style", "sequence", "base", "keywords", "group", "subgroup"}
    rows = _rows(fixture_set)
    for (style, _), (_, row) in rows.items():
        assert row["text"] == f"{row['name']}, {style} style" and row["name"] == row["name"].lower()
        assert "FE0F" not in row["sequence"] and "FE0F" not in row["base"]
    assert rows[("fluent", "1F469 1F3FE 200D 1F373")][1]["text"] == "woman cook: medium-dark skin tone, fluent style"
    assert rows[("fluent", "1F621")][1]["name"] == "enraged face"  # Fluent's file is still called pouting-face
    assert rows[("twemoji", "0023 20E3")][1]["name"] == "keycap: #"  # Twemoji's file is 23-20e3.svg
    assert rows[("openmoji", "0023 20E3")][1]["name"] == "keycap: #"  # OpenMoji's is 0023-FE0F-20E3.svg
    assert rows[("noto", "1F980")][1]["base"] == "1F980" and "crab" in rows[("noto", "1F980")][1]["keywords"]
    assert rows[("noto", "1F469 200D 1F373")][1]["base"] == "1F9D1 200D 1F373"


def test_fixture_images_are_the_named_files(fixture_set):
    """Each SVG style's image is exactly its file rendered (so names and pictures were not mixed up)."""
    index = {seq: i for i, (seq, _) in enumerate(EMOJI)}
    for split, ds in fixture_set.items():
        for row in ds:
            img = np.asarray(row["image"])
            assert img.shape == (SIZE, SIZE, 3) and img.dtype == np.uint8
            if row["style"] == "noto":
                continue
            expected = render_svg(emoji_svg(index[row["sequence"]], row["style"]), SIZE, STYLE_SOURCES[row["style"]].margin)
            np.testing.assert_array_equal(img, np.asarray(expected), err_msg=f"{row['style']} {row['sequence']}")


def _u(text):  # the spec's unit_hash, written out again here
    return int(hashlib.sha256(text.encode()).hexdigest()[:16], 16) / 2**64


def test_splits_follow_the_spec(fixture_set):
    """Recompute every row's split from the spec's text (shared/specs/emoji.md) and compare."""
    rows = _rows(fixture_set)
    _, entries = emoji.parse_emoji_test(EMOJI_TEST)
    toned = {}
    for e in entries:
        seq = emoji.strip_vs(e.sequence)
        if len(seq) > 1 and any(0x1F3FB <= cp <= 0x1F3FF for cp in seq):
            toned.setdefault(emoji.format_sequence(base_sequence(seq)), []).append(emoji.format_sequence(seq))
    variant_bases = {b for b in toned if _u("validation:" + b) >= 0.1 and _u("heldout_variants:" + b) < 0.1}
    held_variant = {min(toned[b], key=lambda s: _u("variant:" + s)) for b in variant_bases}
    for (style, seq), (split, row) in rows.items():
        base = row["base"]
        if _u("validation:" + base) < 0.1:
            expected = "validation"
        elif seq in held_variant:
            expected = "heldout_variants"
        elif style == "noto" and base not in variant_bases and _u("heldout_style:" + base) < 0.1:
            expected = "heldout_style"
        else:
            expected = "train"
        assert split == expected, (style, seq)
    assert all(len(ds) for ds in fixture_set.values())  # the fixture's emoji were chosen so every rule selects some


def test_heldout_style_never_in_train(fixture_set):
    train = fixture_set["train"]
    train_keys = set(zip(train["style"], train["sequence"]))
    train_bytes = {hashlib.sha1(img.tobytes()).hexdigest() for img in train["image"]}
    held = fixture_set["heldout_style"]
    assert set(held["style"]) == {"noto"}
    for row in held:
        assert ("noto", row["sequence"]) not in train_keys
        assert hashlib.sha1(row["image"].tobytes()).hexdigest() not in train_bytes
        # ... while the same emoji's other styles are in train.
        assert {s for s, q in train_keys if q == row["sequence"]} == {"twemoji", "openmoji", "fluent"}
    assert not {b for s, b in zip(train["style"], train["base"]) if s == "noto"} & set(held["base"])
    assert not set(train["base"]) & set(fixture_set["validation"]["base"])


def test_duplicate_artwork_leaves_evaluation_not_train():
    _, entries = emoji.parse_emoji_test(EMOJI_TEST)
    by_seq = {emoji.format_sequence(emoji.strip_vs(e.sequence)): e for e in entries}
    # crab is a train emoji, "slightly smiling face" a validation one; give both one artwork.
    rows = [emoji._Row(by_seq["1F980"], "noto", "noto:shared", b""), emoji._Row(by_seq["1F642"], "noto", "noto:shared", b""),
            emoji._Row(by_seq["1F468"], "noto", "noto:man", b"")]
    assert emoji.assign_splits(rows, entries) == ["train", None, "validation"]


def test_deterministic_and_cached(fixture_set, fixture_dir, tmp_path, monkeypatch):
    kwargs = fixture_kwargs(tmp_path / "sources")
    other = build_emoji_dataset(SIZE, styles=list(reversed(ALL_STYLES)), cache_dir=tmp_path / "cache", **kwargs)  # a second cold build
    for split in fixture_set:
        assert fixture_set[split].data.table.equals(other[split].data.table), split

    def no_rebuild(*args, **kwargs):
        raise AssertionError("cache miss: rebuilt instead of loading")

    monkeypatch.setattr(emoji, "_style_rows", no_rebuild)
    again = build_emoji_dataset(SIZE, styles=ALL_STYLES, cache_dir=tmp_path / "cache", **kwargs)
    for split in fixture_set:
        assert fixture_set[split].data.table.equals(again[split].data.table), split
    with pytest.raises(AssertionError, match="cache miss"):  # another size is another cache entry
        build_emoji_dataset(16, styles=ALL_STYLES, cache_dir=tmp_path / "cache", **kwargs)


def test_a_missing_style_is_skipped_or_named(fixture_dir, tmp_path, caplog):
    kwargs = fixture_kwargs(tmp_path / "sources")
    kwargs["source_paths"]["fluent"] = tmp_path / "nowhere" / "fluentui-emoji-1.3.0.tgz"
    with caplog.at_level(logging.WARNING, logger="hf_textimg.data.emoji"):
        data = build_emoji_dataset(SIZE, styles=["twemoji", "fluent"], cache_dir=tmp_path / "cache", **kwargs)
    assert set(data["train"]["style"]) == {"twemoji"}
    assert "npm pack fluentui-emoji@1.3.0" in caplog.text
    assert "npm pack fluentui-emoji@1.3.0" in emoji_build_report(data)["skipped_styles"]["fluent"]
    with pytest.raises(EmojiSourceError, match=r"fluentui-emoji@1\.3\.0.*npm pack fluentui-emoji@1\.3\.0"):
        build_emoji_dataset(SIZE, styles=["twemoji", "fluent"], cache_dir=tmp_path / "cache", on_missing="error", **kwargs)
    with pytest.raises(EmojiSourceError, match="npm pack fluentui-emoji@1.3.0"):  # the only style asked: always an error
        build_emoji_dataset(SIZE, styles="fluent", cache_dir=tmp_path / "cache", **kwargs)
    with pytest.raises(ValueError, match="styles"):
        build_emoji_dataset(SIZE, styles=["apple"], cache_dir=tmp_path / "cache", **kwargs)


def test_missing_debian_sources_name_the_package(tmp_path, monkeypatch):
    kwargs = fixture_kwargs(tmp_path / "sources")
    with pytest.raises(EmojiSourceError, match="fonts-noto-color-emoji") as err:
        build_emoji_dataset(cache_dir=tmp_path, **{**kwargs, "font_path": tmp_path / "missing.ttf"})
    assert isinstance(err.value, FileNotFoundError) and "apt-get install" in str(err.value)
    with pytest.raises(EmojiSourceError, match="unicode-data"):
        build_emoji_dataset(cache_dir=tmp_path, **{**kwargs, "emoji_test_path": tmp_path / "missing.txt"})
    with pytest.raises(EmojiSourceError, match="unicode-cldr-core"):
        build_emoji_dataset(cache_dir=tmp_path, **{**kwargs, "cldr_dir": tmp_path})


def test_fluent_file_names():
    E = emoji.EmojiEntry
    entries = [E(_seq("1F6A6"), "vertical traffic light", "", "", "fully-qualified"),
               E(_seq("1F468 200D 1F9B2"), "man: bald", "", "", "fully-qualified"),
               E(_seq("1F468 1F3FF 200D 1F9B2"), "man: dark skin tone, bald", "", "", "fully-qualified"),
               E(_seq("1F468 1F3FE 200D 1F9B2"), "man: medium-dark skin tone, bald", "", "", "fully-qualified"),
               E(_seq("1F552"), "three o’clock", "", "", "fully-qualified"),
               E(_seq("1F471 200D 2640 FE0F"), "woman: blond hair", "", "", "fully-qualified"),
               E(_seq("1F471 1F3FB 200D 2640 FE0F"), "woman: light skin tone, blond hair", "", "", "fully-qualified")]
    index = fluent_name_index(entries)
    assert fluent_sequence("vertical-traffic-light", index) == _seq("1F6A6")  # "-light" here is no skin tone
    assert fluent_sequence("man-bald", index) == _seq("1F468 200D 1F9B2")
    assert fluent_sequence("man-bald-dark", index) == _seq("1F468 1F3FF 200D 1F9B2")
    assert fluent_sequence("man-bald-medium-dark", index) == _seq("1F468 1F3FE 200D 1F9B2")
    assert fluent_sequence("three-oclock", index) == _seq("1F552")
    assert fluent_sequence("woman-blonde-hair-light", index) == _seq("1F471 1F3FB 200D 2640")  # Fluent spells it "blonde"
    assert fluent_sequence("man-bald-light", index) is None  # no such line in these entries
    assert fluent_sequence("blackbird", index) is None


def test_base_sequence():
    assert base_sequence(_seq("1F469 1F3FE 200D 1F373")) == _seq("1F9D1 200D 1F373")
    assert base_sequence(_seq("1F3C3 1F3FB 200D 2640 FE0F")) == _seq("1F3C3")
    assert base_sequence(_seq("1F469 200D 2764 FE0F 200D 1F48B 200D 1F468")) == _seq("1F48F")
    assert base_sequence(_seq("2640 FE0F")) == _seq("2640")  # female sign is its own base
    assert base_sequence(_seq("1F3FB")) == _seq("1F3FB")  # skin-tone swatch too


def test_emoji_caption_and_caption_styles(fixture_set):
    example = {"text": "mushroom, noto style", "name": "mushroom", "style": "noto", "keywords": ["mushroom", "toadstool"]}
    rng = random.Random(0)
    captions = {emoji_caption(example, rng) for _ in range(50)}
    assert captions == {"mushroom, noto style", "mushroom, toadstool, noto style"}
    assert {emoji_caption(example, rng, style_prob=0.5, keyword_prob=0) for _ in range(50)} == {"mushroom", "mushroom, noto style"}
    assert emoji_caption({"text": "moose", "keywords": []}, np.random.default_rng(0), keyword_prob=1.0) == "moose"
    a = [emoji_caption(example, random.Random(3)) for _ in range(5)]
    assert a == [emoji_caption(example, random.Random(3)) for _ in range(5)]

    assert caption_alternatives("crab, noto style", "crab", "sometimes") == ["crab, noto style", "crab"]
    train = fixture_set["train"]
    assert with_caption_style(train, "always") is train
    never = with_caption_style(train, "never")
    assert never["text"] == train["name"] and np.array_equal(np.asarray(never[0]["image"]), np.asarray(train[0]["image"]))
    sometimes = with_caption_style(train, "sometimes")
    assert sometimes["text"][0] == [train["text"][0], train["name"][0]]
    with pytest.raises(ValueError, match="caption_style"):
        with_caption_style(train, "often")


# ----------------------------------------------------------------------------- the real Noto font

SOURCES = [emoji.DEFAULT_NOTO_FONT, emoji.DEFAULT_EMOJI_TEST, emoji.DEFAULT_CLDR_DIR]
needs_debian = pytest.mark.skipif(not all(Path(p).exists() for p in SOURCES), reason=f"needs `{emoji.APT_HINT}`")


@pytest.fixture(scope="module")
def noto(tmp_path_factory):
    return build_emoji_dataset(SIZE, styles="noto", cache_dir=tmp_path_factory.mktemp("emoji_cache"))


@pytest.fixture(scope="module")
def noto_rows(noto):
    return {seq: item for (style, seq), item in _rows(noto).items()}


def _image(noto, rows, sequence):
    split, _ = rows[sequence]
    ds = noto[split]
    return np.asarray(ds[ds["sequence"].index(sequence)]["image"])


@needs_debian
def test_real_noto_count_and_names(noto, noto_rows):
    total = sum(len(ds) for ds in noto.values())
    assert total >= 3500
    assert noto["train"].info.license == "OFL-1.1"
    rows = noto_rows
    assert rows["1F344"][1]["name"] == "mushroom" and rows["1F344"][1]["text"] == "mushroom, noto style"
    assert "toadstool" in rows["1F344"][1]["keywords"]
    assert rows["1F469 1F3FE 200D 1F373"][1]["text"] == "woman cook: medium-dark skin tone, noto style"
    assert "medium skin tone" in rows["1F44D 1F3FD"][1]["name"]  # thumbs up
    assert rows["1F1EB 1F1F7"][1]["name"] == "flag: france"
    assert rows["0023 20E3"][1]["name"] == "keycap: #"
    # The font's mirrored (right-to-left) ZWJ ligatures must not rename forward sequences.
    assert rows["1F3C3 200D 2640"][1]["name"] == "woman running"
    flags = [r for _, r in rows.values() if r["subgroup"] == "country-flag"]
    assert len(flags) > 200 and all(r["name"].startswith("flag: ") for r in flags)
    tones = [r for _, r in rows.values() if emoji.has_skin_tone(_seq(r["sequence"]))]
    assert len(tones) > 1500 and all("skin tone" in r["name"] for r in tones)


@needs_debian
def test_real_noto_images_match_names(noto, noto_rows):
    def mean_colour(img):  # over non-white pixels
        ink = img[(img < 235).any(-1)].astype(float)
        return ink.mean(0)

    r, g, b = mean_colour(_image(noto, noto_rows, "1F344"))  # mushroom: red cap
    assert r > g + 30 and r > b + 30
    france = _image(noto, noto_rows, "1F1EB 1F1F7").astype(float)  # blue | white | red
    left, right = france[8:24, 3:9].mean((0, 1)), france[8:24, -9:-3].mean((0, 1))
    assert left[2] > left[0] + 50 and right[0] > right[2] + 50
    # Mirror-image pairs keep their own artwork: "light skin tone, dark skin tone" has
    # the light-skinned person (brighter face) on the left, its mirror on the right.
    half = SIZE // 2
    pairs = [("1F9D1 1F3FB 200D 1F91D 200D 1F9D1 1F3FF", "1F9D1 1F3FF 200D 1F91D 200D 1F9D1 1F3FB"),
             ("1F469 1F3FB 200D 1F91D 200D 1F468 1F3FF", "1F469 1F3FF 200D 1F91D 200D 1F468 1F3FB")]
    for light_left, dark_left in pairs:
        img = _image(noto, noto_rows, light_left).astype(float)
        assert img[:half, :half].mean() > img[:half, half:].mean() + 5
        img = _image(noto, noto_rows, dark_left).astype(float)
        assert img[:half, :half].mean() + 5 < img[:half, half:].mean()
    for ds in noto.values():
        for img in ds.select(range(0, len(ds), 7))["image"]:
            assert img.mode == "RGB" and img.size == (SIZE, SIZE)
            assert np.asarray(img)[[0, 0, -1, -1], [0, -1, 0, -1]].min() >= 250


@needs_debian
def test_real_noto_splits(noto):
    train, val, held = (set(noto[s]["base"]) for s in ("train", "validation", "heldout_variants"))
    assert not train & val
    assert 0.05 < len(val) / len(train | val) < 0.15
    assert 0 < len(noto["heldout_variants"]) < 0.05 * len(noto["train"])
    assert held <= train  # other variants of each held-out base are in train
    assert 0.05 < len(noto["heldout_style"]) / len(noto["train"]) < 0.15
    assert not set(noto["heldout_style"]["base"]) & train  # noto-only: the held-out bases have no noto image in train


# ----------------------------------------------------------------------------- the real npm packages


def _real_packages():
    folder = emoji._default_cache_dir() / "sources"
    found = {s: folder / STYLE_SOURCES[s].tarball_name for s in ("twemoji", "openmoji", "fluent")}
    return found if all(p.exists() for p in found.values()) else None


@pytest.mark.slow
@needs_debian
def test_real_packages_match_emoji_test(tmp_path):
    """The pinned packages, when fetched (.ci/run does): nearly every file matches an emoji-test.txt line."""
    packages = _real_packages()
    if packages is None:
        pytest.skip(f"needs the npm packages in {emoji._default_cache_dir() / 'sources'} (docs/emoji.md)")
    data = build_emoji_dataset(16, styles=ALL_STYLES, cache_dir=tmp_path, source_paths=packages)
    report = emoji_build_report(data)["styles"]
    for style in ("noto", "twemoji", "openmoji"):
        assert report[style]["images"] >= 3600, style
    assert report["fluent"]["images"] >= 3000  # no flags, no two-tone pairs
    assert report["twemoji"]["unmatched"] < 100 and report["fluent"]["unmatched"] < 200 and report["openmoji"]["unmatched"] < 500
    rows = _rows(data)
    for style in ALL_STYLES:
        assert rows[(style, "1F980")][1]["name"] == "crab"
        assert rows[(style, "1F469 1F3FE 200D 1F373")][1]["name"] == "woman cook: medium-dark skin tone"


def test_ci_fetches_the_pinned_packages():
    ci = (Path(__file__).parent.parent / ".ci" / "run").read_text()
    for style in ("twemoji", "openmoji", "fluent"):
        assert STYLE_SOURCES[style].npm_spec in ci, style
    assert glob.glob(str(Path(__file__).parent / "data" / "emoji" / "*.ttf"))


def test_cli_builds_four_styles_and_reports_them(tmp_path, monkeypatch, capsys):
    from emoji_fixture import set_fixture_env

    from hf_textimg.cli import main

    set_fixture_env(monkeypatch, tmp_path)
    out = tmp_path / "emoji32"
    assert main(["data", "emoji", "--styles", "noto", "twemoji", "openmoji", "fluent", "--size", "32", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "fluent: 29 images from 31 files of fluentui-emoji 1.3.0; 2 files matched no emoji-test.txt sequence" in printed
    assert (out / "dataset_dict.json").is_file()
    monkeypatch.setenv("HF_TEXTIMG_OPENMOJI", str(tmp_path / "missing.tgz"))
    assert main(["data", "emoji", "--styles", "noto", "openmoji", "--out", str(tmp_path / "b")]) == 0
    assert "openmoji: SKIPPED" in capsys.readouterr().out
    assert main(["data", "emoji", "--styles", "noto", "openmoji", "--strict", "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "npm pack openmoji@17.0.0" in err and "Traceback" not in err

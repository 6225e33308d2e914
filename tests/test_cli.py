import datasets
import pytest
from PIL import Image

from hf_textimg.cli import main

SMALL = ["--num-train", "12", "--num-validation", "4", "--num-heldout", "4"]


def test_data_shapes_to_load_from_disk(tmp_path, capsys):
    assert main(["data", "shapes", "--size", "64", "--out", str(tmp_path / "s"), *SMALL]) == 0
    data = datasets.load_from_disk(str(tmp_path / "s"))
    assert {k: len(v) for k, v in data.items()} == {"train": 12, "validation": 4, "heldout": 4}
    assert data["train"][0]["image"].size == (64, 64)
    assert "load_from_disk" in capsys.readouterr().out


def test_data_shapes_imagefolder_loads_with_datasets(tmp_path):
    assert main(["data", "shapes", "--out", str(tmp_path / "f"), "--imagefolder", *SMALL]) == 0
    heldout = datasets.load_dataset("imagefolder", data_dir=str(tmp_path / "f" / "heldout"))["train"]
    assert len(heldout) == 4 and heldout[0]["text"]


def test_demo_writes_a_grid(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--num-images", "8"]) == 0
    grid = Image.open(tmp_path / "shapes_preview.png")
    assert grid.size[0] > 128 * 4
    assert str(tmp_path / "shapes_preview.png") in capsys.readouterr().out


def test_bad_size_is_rejected_by_the_parser(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["data", "shapes", "--size", "48", "--out", str(tmp_path)])
    assert "invalid choice" in capsys.readouterr().err


def test_missing_emoji_font_is_one_clear_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_TEXTIMG_NOTO_FONT", str(tmp_path / "missing.ttf"))
    assert main(["data", "emoji", "--out", str(tmp_path / "e"), "--cache-dir", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "fonts-noto-color-emoji" in err and "Traceback" not in err

"""The CLI checks where results go before it generates anything, keeps memory bounded, and never reports blank
images as a score (issue 21; docs/reliability.md)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image
from test_cli import PROMPTS, pixels, tiny_models  # noqa: F401  (fixture)

import hf_textimg.cli as cli
from hf_textimg.cli import main


@pytest.fixture
def no_loading(monkeypatch):
    """Any attempt to load a model fails the test: the error must come first."""
    monkeypatch.setattr(cli, "load_pipeline", lambda *a, **k: pytest.fail("a model was loaded before the output was checked"))


@pytest.fixture
def read_only(tmp_path, monkeypatch):
    folder = tmp_path / "read-only"
    folder.mkdir()
    (folder / "old.png").write_bytes(b"x")
    (folder / "old.png").chmod(0o444)
    folder.chmod(0o555)
    if os.access(folder, os.W_OK):  # root ignores permission bits: make os.access answer as for anyone else
        real = os.access
        monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if str(path).startswith(str(folder)) else real(path, mode, **kw))
    yield folder
    folder.chmod(0o755)


OUTPUT_CASES = [
    # (argv with {tmp} / {ro}, message)
    (["generate", "a red circle", "--out", "{tmp}/a-folder.png"], r"--out '.*a-folder.png' is a folder"),
    (["generate", "a red circle", "--out", "{tmp}/a-file/grid.png"], r"--out '.*a-file/grid.png' cannot be created: '.*a-file' is a file"),
    (["generate", "a red circle", "--out", "{ro}/grid.png"], r"--out '.*read-only/grid.png' is not writable"),
    (["generate", "a red circle", "--out", "{ro}/old.png"], r"--out '.*old.png' exists and is read-only"),
    (["generate", "a red circle", "--num-images", "2000"], r"2000 images, more than one grid holds \(1024\); pass --individual"),
    (["evaluate", "--json", "{tmp}/a-folder.png"], r"--json '.*a-folder.png' is a folder"),
    (["evaluate", "--json", "{tmp}/a-file/eval.json"], r"--json .* cannot be created: '.*a-file' is a file"),
    (["evaluate", "--json", "{ro}/eval.json"], r"--json .* is not writable"),
    (["demo", "--out", "{tmp}/a-file"], r"--out '.*a-file/shapes_demo.png' cannot be created: '.*a-file' is a file"),
    (["demo", "--out", "{ro}/demo"], r"--out .* is not writable"),
    (["demo", "--num-images", "200"], r"the demo grid holds at most 128 images per prompt"),
    (["data", "shapes", "--out", "{tmp}/a-file"], r"--out '.*a-file' is a file; pass a folder"),
    (["data", "shapes", "--out", "{ro}/data"], r"--out .* is not writable"),
]


@pytest.mark.parametrize("argv, message", OUTPUT_CASES, ids=[" ".join(c[0][:1] + c[0][-2:]) for c in OUTPUT_CASES])
def test_outputs_are_checked_before_any_work(argv, message, tmp_path, read_only, no_loading, monkeypatch, capsys):
    (tmp_path / "a-folder.png").mkdir()
    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setattr(cli, "_build_dataset", lambda args: pytest.fail("the data set was built before the output was checked"))
    assert main([a.format(tmp=tmp_path, ro=read_only) for a in argv]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    import re

    assert re.search(message, err), err


def test_infinite_guidance_is_a_parser_error(capsys):
    with pytest.raises(SystemExit):
        main(["generate", "a red circle", "--guidance", "inf"])
    assert "--guidance: must be a finite number, got inf" in capsys.readouterr().err


def test_a_broken_pipeline_folder_is_one_line_naming_the_file(tiny_models, tmp_path, capsys):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_models["diffusion"], broken)
    index = json.loads((broken / "model_index.json").read_text())
    del index["_class_name"]
    (broken / "model_index.json").write_text(json.dumps(index))
    assert main(["generate", "a red circle", "--model", str(broken), "--out", str(tmp_path / "g.png")]) == 2
    err = capsys.readouterr().err
    assert "model_index.json has no '_class_name'" in err and "Traceback" not in err


def test_generate_writes_chunk_by_chunk_and_the_grid_shows_the_first_images(tiny_models, tmp_path, monkeypatch):
    argv = ["generate", *PROMPTS, "--model", tiny_models["diffusion"], "--num-images", "3", "--steps", "2", "--quiet", "--individual"]
    assert main([*argv, "--out", str(tmp_path / "whole.png")]) == 0  # one pipeline call
    monkeypatch.setattr(cli, "CHUNK_IMAGES", 2)
    monkeypatch.setattr(cli, "GRID_MAX_IMAGES", 4)
    calls = []
    real_chunks = cli._chunk_calls
    monkeypatch.setattr(cli, "_chunk_calls", lambda *a: calls.extend(real_chunks(*a)) or real_chunks(*a))
    assert main([*argv, "--out", str(tmp_path / "chunked.png")]) == 0
    assert calls == [([0], 2), ([0], 1), ([1], 2), ([1], 1)]  # never more than 2 images per call
    for p in range(2):
        for i in range(3):  # the same images, whatever the chunks (up to float rounding of other batch sizes)
            a, b = pixels(tmp_path / f"whole-{p:02d}-{i:02d}.png"), pixels(tmp_path / f"chunked-{p:02d}-{i:02d}.png")
            assert np.abs(a.astype(int) - b).max() <= 1
    assert Image.open(tmp_path / "chunked.png").width < Image.open(tmp_path / "whole.png").width  # 2 of 3 per prompt


def test_images_are_on_disk_before_a_later_chunk_fails(tiny_models, tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "CHUNK_IMAGES", 2)
    real_generate = cli.generate_chunks

    def failing_after_one_chunk(*args, **kwargs):
        chunks = real_generate(*args, **kwargs)
        yield next(chunks)
        raise ValueError("the second chunk failed")

    monkeypatch.setattr(cli, "generate_chunks", failing_after_one_chunk)
    out = tmp_path / "g.png"
    argv = ["generate", *PROMPTS, "--model", tiny_models["decoder"], "--num-images", "2", "--quiet", "--individual", "--out", str(out)]
    assert main(argv) == 2
    assert sorted(p.name for p in tmp_path.glob("g-*.png")) == ["g-00-00.png", "g-00-01.png"]


class BlankPipeline:
    """Stands in for a pipeline whose settings give nothing but flat images (e.g. an overflow to one colour)."""

    def set_progress_bar_config(self, **kwargs):
        pass

    def __call__(self, prompt, generator=None, output_type="pil", num_inference_steps=20, guidance_scale=3.0):
        return type("Output", (), {"images": np.zeros((len(prompt), 32, 32, 3), np.float32)})()


def test_evaluate_refuses_to_score_only_blank_images(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "load_pipeline", lambda *a, **k: BlankPipeline())
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--prompts-per-category", "1", "--json", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "every one of the 7 generated images is a single flat colour" in err and "num_inference_steps=20" in err
    assert not out.exists()


PARSER_CASES = [
    (["generate", "a red circle", "--seed", str(2**64)], "--seed: must be between -2**63 and 2**64 - 1"),
    (["data", "shapes", "--num-train", "-5", "--out", "x"], "--num-train: must be at least 1, got -5"),
    (["data", "shapes", "--num-validation", "0", "--out", "x"], "--num-validation: must be at least 1, got 0"),
    (["data", "shapes", "--kind-probs", "nan", "1", "1", "1", "--out", "x"], "--kind-probs: must be a finite number >= 0, got nan"),
]


@pytest.mark.parametrize("argv, message", PARSER_CASES, ids=[" ".join(c[0][-2:]) for c in PARSER_CASES])
def test_hostile_numbers_are_parser_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err

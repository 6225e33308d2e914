"""Model cards: every training script writes README.md from the templates in model_cards/; the
metadata parses and validates, the evaluation is in it, and its usage snippet runs."""

import json
import re
import shutil

import pytest
from huggingface_hub import ModelCard, ModelCardData
from huggingface_hub.repocard_data import model_index_to_eval_results

from hf_textimg.hub import _files_to_push, render_model_card
from hf_textimg.training import TrainConfig, parse_args
from training.train_autoencoder import main as train_autoencoder
from training.train_concept import main as train_concept
from training.train_decoder import main as train_decoder
from training.train_diffusion import main as train_diffusion

SECRET = "hf_never_write_me"
SHAPES = ["--dataset_name", "shapes", "--num_shapes_train", "64", "--num_shapes_eval", "16", "--max_eval_samples", "16",
          "--max_length", "16", "--tokenizer_vocab_size", "128", "--train_batch_size", "8", "--hub_token", SECRET]
DIFFUSION = SHAPES + [
    "--unet_block_out_channels", "16", "32", "--unet_attention_head_dim", "8", "--unet_norm_num_groups", "8",
    "--train_text_encoder", "--text_hidden_size", "32", "--text_num_layers", "1", "--text_num_heads", "2", "--projection_dim", "32",
    "--eval_prompts_per_category", "1", "--eval_num_inference_steps", "2", "--validation_images_per_prompt", "1",
    "--max_train_steps", "4", "--checkpointing_steps", "4", "--validation_steps", "2",
    "--shapes_canonical_layouts", "relation", "count", "--prompt_normalization", "shapes_relations",
]
CONCEPT = SHAPES + [
    "--text_hidden_size", "32", "--text_num_layers", "1", "--text_num_heads", "2", "--vision_base_channels", "16",
    "--vision_num_stages", "2", "--projection_dim", "32", "--max_train_steps", "2", "--checkpointing_steps", "100",
    "--validation_steps", "2",
]


@pytest.fixture(scope="module")
def diffusion_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("diffusion")
    train_diffusion(DIFFUSION + ["--output_dir", str(out)])
    return out


@pytest.fixture(scope="module")
def concept_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("concept")
    train_concept(CONCEPT + ["--output_dir", str(out)])
    return out


def python_snippet(card: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", card, flags=re.S)
    assert len(blocks) == 1
    return blocks[0]


def test_card_metadata_is_valid_and_holds_the_evaluation(diffusion_dir):
    card = ModelCard.load(diffusion_dir / "README.md")
    data = card.data
    assert (data.license, data.library_name, data.pipeline_tag) == ("apache-2.0", "diffusers", "text-to-image")
    assert {"hf-textimg", "text-to-image", "diffusion"} <= set(data.tags)
    assert data.datasets == ["hf-textimg/shapes-world"]
    ModelCardData(**data.to_dict(), ignore_metadata_errors=False)  # strict re-parse of the YAML, model-index included

    metrics = json.loads((diffusion_dir / "eval_results.json").read_text())["metrics"]
    name, results = model_index_to_eval_results(data.to_dict()["model-index"])
    assert name == diffusion_dir.name
    values = {r.metric_name: r.metric_value for r in results}
    assert set(values) == {"single", "color", "position", "count", "pair", "relation", "heldout", "overall", "exact"}
    assert all(values[k] == round(metrics[f"shapes_{k}"], 4) for k in values)
    assert {r.task_type for r in results} == {"text-to-image"} and {r.metric_type for r in results} == {"accuracy"}


def test_card_body_has_evaluation_training_samples_and_licences(diffusion_dir):
    text = (diffusion_dir / "README.md").read_text()
    metrics = json.loads((diffusion_dir / "eval_results.json").read_text())["metrics"]
    for category in ("single", "color", "position", "count", "pair", "relation", "heldout", "overall", "exact"):
        assert re.search(rf"^\| {category} \| .* \| {metrics['shapes_' + category]:.3f} \|$", text, flags=re.M), category
    assert "| 2 |" in text and "| 4 |" in text  # one history row per evaluation
    assert "python training/train_diffusion.py --dataset_name shapes" in text and f"--output_dir {diffusion_dir}" in text
    grid = re.search(r"!\[[^\]]*\]\(([^)]+)\)", text).group(1)
    assert grid == "validation/step-4.png" and (diffusion_dir / grid).is_file()
    assert "## Training data and licences" in text and "The Shapes world" in text and "## Limitations" in text
    # the data and caption options that shape what it draws are stated as limitations
    assert "(`--shapes_canonical_layouts relation`)" in text and "which object goes first" not in text
    assert "Trained with `--prompt_normalization shapes_relations`" in text
    assert "(`--shapes_canonical_layouts count`)" in text
    assert "`--shapes_canonical_layouts single`" not in text and "`--shapes_canonical_layouts pair`" not in text


def test_the_hub_token_is_written_nowhere(diffusion_dir):
    for path in diffusion_dir.rglob("*"):
        if path.is_file() and path.suffix in (".md", ".json"):
            assert SECRET not in path.read_text(), path
    assert "--hub_token '<hidden>'" in (diffusion_dir / "README.md").read_text()


def test_diffusion_usage_snippet_runs(diffusion_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(python_snippet((diffusion_dir / "README.md").read_text()), {})
    assert (tmp_path / "sample.png").is_file()


def test_concept_card_and_its_snippet(concept_dir, capsys):
    card = ModelCard.load(concept_dir / "README.md")
    assert (card.data.library_name, card.data.pipeline_tag) == ("transformers", "zero-shot-image-classification")
    _, results = model_index_to_eval_results(card.data.to_dict()["model-index"])
    assert {r.metric_name for r in results} >= {"color accuracy", "shape accuracy", "heldout pair accuracy"}
    exec(python_snippet(card.text), {})  # trust_remote_code from the folder's own copy of the model code
    assert "tensor(" in capsys.readouterr().out


def test_emoji_card_carries_the_emoji_licences(concept_dir, tmp_path):
    folder = tmp_path / "concept-emoji"
    shutil.copytree(concept_dir, folder, ignore=shutil.ignore_patterns("checkpoint-*"))
    results = json.loads((folder / "eval_results.json").read_text())
    results["config"]["dataset_name"] = "emoji"
    results["metrics"] = {"text_to_image_recall@1": 0.05, "image_to_text_recall@5": 0.14}
    results["metrics_history"] = []
    (folder / "eval_results.json").write_text(json.dumps(results))
    card = render_model_card(folder, model_id="me/concept-emoji")
    assert card.data.datasets == ["hf-textimg/emoji-noto"]
    for needle in ("Noto Color Emoji", "SIL Open Font License 1.1", "Apache-2.0", "© Google LLC", "Unicode License v3",
                   "emoji-test.txt", "CLDR", "keep the attribution"):
        assert needle in card.text, needle
    assert 'AutoModel.from_pretrained("me/concept-emoji", trust_remote_code=True)' in card.text
    assert {r.metric_type for r in model_index_to_eval_results(card.data.to_dict()["model-index"])[1]} == {"recall"}
    assert "Twemoji" not in card.text and "OpenMoji" not in card.text

    # Four styles: each listed with its licence and attribution; CC BY-SA's share-alike is spelled out.
    results["config"]["emoji_styles"] = ["fluent", "noto", "openmoji", "twemoji"]
    (folder / "eval_results.json").write_text(json.dumps(results))
    card = render_model_card(folder, model_id="me/concept-emoji")
    assert card.data.datasets == ["hf-textimg/emoji-noto-twemoji-openmoji-fluent"]
    for needle in ("Noto Color Emoji", "npm `@twemoji/svg@15.0.0`", "Creative Commons Attribution 4.0", "© Twitter, Inc.",
                   "npm `openmoji@17.0.0`", "Creative Commons Attribution-ShareAlike 4.0", "openmoji.org", "same licence",
                   "npm `fluentui-emoji@1.3.0`", "MIT License", "© Microsoft Corporation", "--emoji_styles noto twemoji openmoji fluent"):
        assert needle in card.text, needle


def test_decoder_and_autoencoder_cards(concept_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the decoder snippet saves sample.png
    decoder, autoencoder = tmp_path / "decoder", tmp_path / "autoencoder"
    train_decoder(SHAPES + ["--concept_model_path", str(concept_dir), "--output_dir", str(decoder), "--max_train_steps", "2",
                            "--validation_steps", "2", "--checkpointing_steps", "100", "--eval_prompts_per_category", "1",
                            "--decoder_block_out_channels", "16", "16", "8", "--norm_num_groups", "4",
                            "--shapes_canonical_layouts", "single", "pair"])
    train_autoencoder(SHAPES + ["--caption_column", "", "--output_dir", str(autoencoder), "--max_train_steps", "2",
                                "--validation_steps", "2", "--checkpointing_steps", "100", "--code_dim", "32",
                                "--encoder_block_out_channels", "8", "16", "16", "--decoder_block_out_channels", "16", "16", "8",
                                "--norm_num_groups", "4"])
    decoder_card, autoencoder_card = ModelCard.load(decoder / "README.md"), ModelCard.load(autoencoder / "README.md")
    assert decoder_card.data.pipeline_tag == "text-to-image" and "one-shot" in decoder_card.data.tags
    assert "python training/train_decoder.py" in decoder_card.text and "| single |" in decoder_card.text
    # the canonical layouts it trained with are limitations; the ones it did not are not mentioned
    assert "(`--shapes_canonical_layouts single`)" in decoder_card.text
    assert "(`--shapes_canonical_layouts pair`)" in decoder_card.text
    assert "`--shapes_canonical_layouts count`" not in decoder_card.text
    assert autoencoder_card.data.library_name == "diffusers" and "psnr" in autoencoder_card.text
    for card in (decoder_card, autoencoder_card):
        ModelCardData(**card.data.to_dict(), ignore_metadata_errors=False)
        exec(python_snippet(card.text), {})
    # the decoder script saves no validation grid: a samples.png made after training becomes the card's grid
    assert "![Samples" not in decoder_card.text
    shutil.copy(tmp_path / "sample.png", decoder / "samples.png")
    assert "![Samples, each captioned with its prompt](samples.png)" in render_model_card(decoder).text


def test_push_selection_is_safetensors_configs_card_and_grids_only(diffusion_dir):
    pushed = {in_repo for _, in_repo in _files_to_push(diffusion_dir)}
    assert {"README.md", "model_index.json", "unet/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors",
            "text_encoder/modeling_concept.py", "tokenizer/tokenizer.json", "validation/step-4.png"} <= pushed
    assert not [p for p in pushed if p.startswith("checkpoint-") or p.endswith((".bin", ".pkl", ".pt", ".pth"))]


def test_bad_hub_model_id_is_rejected_by_name():
    with pytest.raises(ValueError, match="--hub_model_id"):
        parse_args(TrainConfig, ["--hub_model_id", "a/b/c", "--output_dir", "/tmp/x"])


def test_a_wheel_install_carries_the_card_templates(tmp_path):
    # Training writes a card at the end of every run, so the templates must ship in the wheel, not only sit in the repo.
    import subprocess
    import sys
    import zipfile
    from pathlib import Path

    from hf_textimg.hub import CARD_TEMPLATES, SECTIONS_TEMPLATE

    pytest.importorskip("setuptools")  # the build backend, needed without build isolation (no network)
    repo = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(repo)],
                   check=True, capture_output=True, cwd=tmp_path)
    (wheel,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for template in [SECTIONS_TEMPLATE, *CARD_TEMPLATES.values()]:
        assert f"hf_textimg/model_cards/{template}" in names

"""The training scripts on `--dataset_name emoji` (fixture sources, four styles): data, caption option, metrics."""

import json

import pytest
from diffusers import DiffusionPipeline
from emoji_fixture import set_fixture_env

from hf_textimg.data.emoji import is_dev_style_row
from hf_textimg.data.emoji_arguments import EmojiDataArguments
from hf_textimg.data.loading import _builtin_dataset
from hf_textimg.training import TrainConfig, load_split, parse_args
from training.train_concept import main as train_concept
from training.train_decoder import main as train_decoder
from training.train_diffusion import main as train_diffusion

STYLES = ["--emoji_styles", "noto", "twemoji", "openmoji", "fluent"]
COMMON = ["--dataset_name", "emoji", *STYLES, "--train_batch_size", "16", "--max_length", "16", "--max_train_steps", "2",
          "--validation_steps", "2", "--checkpointing_steps", "100", "--lr_warmup_steps", "1"]


@pytest.fixture
def emoji_env(tmp_path, monkeypatch):
    set_fixture_env(monkeypatch, tmp_path)
    _builtin_dataset.cache_clear()  # the in-process cache must not hand over another test's sources
    yield tmp_path
    _builtin_dataset.cache_clear()


def test_load_split_selects_styles_and_caption_style(emoji_env):
    cfg = parse_args(TrainConfig, ["--dataset_name", "emoji", "--emoji_styles", "fluent", "openmoji", "--emoji_caption_style", "sometimes",
                                   "--output_dir", str(emoji_env / "out")], EmojiDataArguments)
    train = load_split(cfg, "train")
    assert set(train["style"]) == {"openmoji", "fluent"}
    assert all(caption == [f"{name}, {style} style", name] for caption, name, style in zip(train["text"], train["name"], train["style"]))
    validation = load_split(cfg, "validation")  # evaluation splits keep the spec's captions
    assert all(t == f"{n}, {s} style" for t, n, s in zip(validation["text"], validation["name"], validation["style"]))
    with pytest.raises(ValueError, match="--emoji_styles"):
        parse_args(TrainConfig, ["--dataset_name", "emoji", "--emoji_styles", "apple", "--output_dir", str(emoji_env / "out")], EmojiDataArguments)


def test_a_missing_style_stops_training_with_the_fetch_command(emoji_env, monkeypatch):
    monkeypatch.setenv("HF_TEXTIMG_FLUENT", str(emoji_env / "missing.tgz"))
    cfg = parse_args(TrainConfig, ["--dataset_name", "emoji", *STYLES, "--output_dir", str(emoji_env / "out")], EmojiDataArguments)
    with pytest.raises(FileNotFoundError, match="npm pack fluentui-emoji@1.3.0"):
        load_split(cfg, "train")


def test_concept_reports_recall_and_style_accuracy(emoji_env):
    out = emoji_env / "concept"
    result = train_concept(COMMON + ["--output_dir", str(out), "--text_hidden_size", "32", "--text_num_layers", "1", "--text_num_heads", "2",
                                     "--vision_base_channels", "16", "--vision_num_stages", "2", "--projection_dim", "32"])
    metrics = result["metrics"]
    for key in ("text_to_image_recall@1", "text_to_image_recall@5", "style_accuracy", "style_only_accuracy"):
        assert 0.0 <= metrics[key] <= 1.0, key
    card = (out / "README.md").read_text()
    assert "OpenMoji" in card and "Creative Commons Attribution-ShareAlike 4.0" in card


def test_diffusion_trains_and_scores_the_emoji_benchmark(emoji_env):
    out = emoji_env / "diffusion"
    train_diffusion(COMMON + ["--output_dir", str(out), "--train_text_encoder", "--text_hidden_size", "32", "--text_num_layers", "1",
                              "--text_num_heads", "2", "--projection_dim", "32", "--unet_block_out_channels", "16", "32",
                              "--unet_attention_head_dim", "8", "--unet_norm_num_groups", "8", "--eval_prompts_per_category", "2",
                              "--eval_num_inference_steps", "2", "--validation_images_per_prompt", "1", "--emoji_caption_style", "sometimes"])
    metrics = json.loads((out / "eval_results.json").read_text())["metrics"]
    for name in ("seen", "heldout_style", "heldout_variants", "validation"):
        assert 0.0 <= metrics[f"emoji_{name}_recall@1"] <= 1.0 and 0.0 <= metrics[f"emoji_{name}_style@1"] <= 1.0, name


def test_one_shot_decoder_trains_and_scores_the_emoji_benchmark(emoji_env):
    concept = emoji_env / "concept"
    train_concept(COMMON + ["--output_dir", str(concept), "--text_hidden_size", "32", "--text_num_layers", "1", "--text_num_heads", "2",
                            "--vision_base_channels", "16", "--vision_num_stages", "2", "--projection_dim", "32", "--resolution", "16"])
    out = emoji_env / "decoder"
    train_decoder(COMMON + ["--output_dir", str(out), "--concept_model_path", str(concept), "--objective", "consistency", "--resolution", "16",
                            "--train_text_encoder", "--noise_dim", "0", "--decoder_block_out_channels", "32", "16", "16",
                            "--eval_prompts_per_category", "2"])
    metrics = json.loads((out / "eval_results.json").read_text())["metrics"]
    for name in ("seen", "heldout_style", "heldout_variants", "validation"):
        assert 0.0 <= metrics[f"emoji_{name}_recall@1"] <= 1.0 and 0.0 <= metrics[f"emoji_{name}_style@1"] <= 1.0, name
    assert "val_pixel" in metrics
    assert not any(key.startswith("emoji_dev_style") for key in metrics)  # only for a run that holds the development rows out

    # The same run holding out the noto development rows: trained without them, scored on them.
    out = emoji_env / "decoder-dev"
    train_decoder(COMMON + ["--output_dir", str(out), "--concept_model_path", str(concept), "--objective", "consistency", "--resolution", "16",
                            "--train_text_encoder", "--noise_dim", "0", "--decoder_block_out_channels", "32", "16", "16",
                            "--eval_prompts_per_category", "2", "--emoji_dev_style", "noto"])
    metrics = json.loads((out / "eval_results.json").read_text())["metrics"]
    assert 0.0 <= metrics["emoji_dev_style_recall@1"] <= 1.0 and 0.0 <= metrics["emoji_dev_style_style@1"] <= 1.0


def test_dev_style_rows_leave_the_train_split(emoji_env):
    args = ["--dataset_name", "emoji", *STYLES, "--output_dir", str(emoji_env / "out")]
    full = load_split(parse_args(TrainConfig, args, EmojiDataArguments), "train")
    cfg = parse_args(TrainConfig, args + ["--emoji_dev_style", "noto", "--emoji_caption_style", "never"], EmojiDataArguments)
    train = load_split(cfg, "train")
    dev = {(style, seq) for style, seq, base in zip(full["style"], full["sequence"], full["base"]) if is_dev_style_row(base, style, "noto")}
    assert dev and {s for s, _ in dev} == {"noto"}  # the fixture's thumbs-up bases are development bases
    assert set(zip(train["style"], train["sequence"])) == set(zip(full["style"], full["sequence"])) - dev
    assert train["text"] == train["name"]  # the caption option still applies
    with pytest.raises(ValueError, match="--emoji_dev_style openmoji is not among --emoji_styles"):
        parse_args(TrainConfig, ["--dataset_name", "emoji", "--emoji_styles", "noto", "--emoji_dev_style", "openmoji",
                                 "--output_dir", str(emoji_env / "out")], EmojiDataArguments)
    streaming = parse_args(TrainConfig, args + ["--emoji_dev_style", "noto", "--streaming"], EmojiDataArguments)
    with pytest.raises(ValueError, match="--emoji_dev_style noto rewrite the train split in memory.*drop --streaming"):
        load_split(streaming, "train")


def test_style_zero_shot_on_hand_built_embeddings():
    import torch

    from hf_textimg.evaluation.concept_eval import emoji_style_zero_shot

    styles = ["noto", "twemoji", "openmoji", "fluent"]

    def embed_text(captions):  # a caption points at its style word's axis
        return torch.stack([torch.eye(4)[next(i for i, s in enumerate(styles) if f"{s} style" in c)] for c in captions])

    pixels = torch.arange(6).float()[:, None]  # stand-in "images": their index
    truth = ["noto", "fluent", "twemoji", "fluent", "openmoji", "noto"]
    drawn = ["noto", "fluent", "twemoji", "noto", "openmoji", "twemoji"]  # what the image encoder sees: 4 of 6 right

    def embed_images(batch):
        return torch.stack([torch.eye(4)[styles.index(drawn[int(i)])] for i in batch[:, 0]])

    result = emoji_style_zero_shot(embed_text, embed_images, pixels, ["crab", "crab", "moose", "moose", "crab", "fox"], truth, styles, batch_size=4)
    assert result == {"style_accuracy": 4 / 6, "style_only_accuracy": 4 / 6}


def test_one_shot_decoder_with_the_style_as_its_own_input(emoji_env):
    concept = emoji_env / "concept"
    train_concept(COMMON + ["--output_dir", str(concept), "--text_hidden_size", "32", "--text_num_layers", "1", "--text_num_heads", "2",
                            "--vision_base_channels", "16", "--vision_num_stages", "2", "--projection_dim", "32", "--resolution", "16"])
    decoder_args = COMMON + ["--concept_model_path", str(concept), "--objective", "consistency", "--resolution", "16", "--train_text_encoder",
                             "--noise_dim", "0", "--decoder_block_out_channels", "32", "16", "16", "--class_column", "style",
                             "--class_prompt_template", "{prompt}, {class_name} style"]
    out = emoji_env / "decoder"
    train_decoder(decoder_args + ["--output_dir", str(out), "--eval_prompts_per_category", "2"])
    pipe = DiffusionPipeline.from_pretrained(out)
    assert pipe.config.class_names == sorted(["noto", "twemoji", "openmoji", "fluent"]) and pipe.decoder.config.num_class_embeds == 4
    metrics = json.loads((out / "eval_results.json").read_text())["metrics"]
    assert 0.0 <= metrics["emoji_heldout_style_recall@1"] <= 1.0  # scored through the pipeline, which reads the style from the prompt
    crab = pipe(["crab, noto style", "crab, fluent style"], output_type="pt").images
    assert (crab[0] - crab[1]).abs().max() > 0  # the style input reaches the image

    for bad, message in ((["--class_column", "colour"], "not a column"), (["--streaming"], "drop --streaming"),
                         (["--class_prompt_template", "{prompt} style"], "class_name")):
        with pytest.raises(ValueError, match=message):
            train_decoder(decoder_args + bad + ["--output_dir", str(emoji_env / "bad")])

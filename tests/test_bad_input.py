"""Bad input gets a clear error, never a deep torch trace or lost work: one table per layer, each row asserting the
error type and that the message names the problem.

Policies tested here (and documented where they live):
- an over-long prompt is truncated to the tokenizer's limit with exactly one warning per pipeline;
- an undecodable training image is skipped and counted with one warning (`TensorImageTextDataset.from_dataset`);
  only a split where no image decodes is an error;
- a folder with pickle weights only (`pytorch_model.bin`) is refused before anything is unpickled;
- `--resume_from_checkpoint latest` with no checkpoint starts a fresh run with a warning; an explicit path that is
  not a checkpoint is a ValueError raised before any data is loaded.
"""

from __future__ import annotations

import json
import logging
import os
import shutil

import datasets
import numpy as np
import pytest
import torch
from diffusers import DPMSolverMultistepScheduler
from PIL import Image
from safetensors.torch import load_file
from transformers import AutoModel, BertConfig

from hf_textimg.autoencoder import ConceptAutoencoder, ConceptDecoder
from hf_textimg.concept import ConceptConfig, ConceptModel, ConceptTextConfig, ConceptTextModel, ConceptVisionModel
from hf_textimg.data.loading import load_image_text_dataset
from hf_textimg.diffusion import build_unet
from hf_textimg.pipelines.pipeline_decoder import DecoderPipeline
from hf_textimg.pipelines.pipeline_diffusion import ConceptDiffusionPipeline
from hf_textimg.tokenization import train_tokenizer
from hf_textimg.training.checkpointing import resolve_resume_path
from hf_textimg.training.loop import TensorImageTextDataset
from training import train_autoencoder

PROMPTS = ["a red circle at the top left", "two blue squares"]


# ---- pipelines -------------------------------------------------------------------------------------------------------
def tiny_text_encoder(tokenizer) -> ConceptTextModel:
    config = ConceptTextConfig(vocab_size=len(tokenizer), hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
                               max_position_embeddings=16, projection_dim=32)
    return ConceptTextModel(config).eval()


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(PROMPTS + ["a green plus left of a pink triangle"], vocab_size=200, model_max_length=16)


@pytest.fixture
def decoder_pipe(tokenizer):
    torch.manual_seed(0)
    decoder = ConceptDecoder(code_dim=32, noise_dim=4, block_out_channels=(16, 16, 8, 8), norm_num_groups=4).eval()
    pipe = DecoderPipeline(tokenizer=tokenizer, text_encoder=tiny_text_encoder(tokenizer), decoder=decoder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture
def diffusion_pipe(tokenizer):
    torch.manual_seed(0)
    unet = build_unet(cross_attention_dim=32, concept_dim=32, block_out_channels=(16, 32), attention_head_dim=8, norm_num_groups=8)
    scheduler = DPMSolverMultistepScheduler(prediction_type="v_prediction", thresholding=True, sample_max_value=1.0)
    pipe = ConceptDiffusionPipeline(tokenizer, tiny_text_encoder(tokenizer), unet, scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


BOTH = ("decoder_pipe", "diffusion_pipe")
PIPELINE_CASES = [
    # (pipelines, call kwargs, message pattern)
    (BOTH, dict(prompt=[]), r"`prompt` is an empty list"),
    (BOTH, dict(prompt=["a red circle", 3]), r"`prompt\[1\]` must be a string, got int"),
    (BOTH, dict(prompt=3), r"`prompt` must be a string or a list of strings, got int"),
    (("diffusion_pipe",), dict(num_inference_steps=0), r"`num_inference_steps` must be an integer >= 1, got 0"),
    (("diffusion_pipe",), dict(num_inference_steps=-2), r"`num_inference_steps` must be an integer >= 1, got -2"),
    (("diffusion_pipe",), dict(guidance_scale=-1.0), r"`guidance_scale` must be >= 0"),
    (BOTH, dict(num_images_per_prompt=0), r"`num_images_per_prompt` must be an integer >= 1, got 0"),
    (BOTH, dict(generator=[torch.Generator()] * 3), r"list of 3 generators for 2 images"),
    (BOTH, dict(output_type="jpeg"), r"`output_type` must be one of \('pil', 'np', 'pt', 'latent'\), got 'jpeg'"),
    (("diffusion_pipe",), dict(height=31), r"`height` must be a positive multiple of 2 for this U-Net"),
    (("diffusion_pipe",), dict(width=0), r"`width` must be a positive multiple of 2"),
    (("decoder_pipe",), dict(height=64), r"`height`=64 is not supported: this decoder makes 32x32 images only"),
    (("decoder_pipe",), dict(width=16), r"`width`=16 is not supported"),
    # issue 21: non-finite numbers and wrong types, named
    (BOTH, dict(generator=0), r"`generator` must be a torch.Generator or a list of them, got int \(a seed: pass torch.Generator\(\).manual_seed"),
    (BOTH, dict(generator=np.random.default_rng(0)), r"`generator` must be a torch.Generator or a list of them, got Generator"),
    (BOTH, dict(generator=[torch.Generator(), 3]), r"`generator`\[1\] must be a torch.Generator, got int"),
    (BOTH, dict(num_images_per_prompt=True), r"`num_images_per_prompt` must be an integer >= 1, got True"),
    (BOTH, dict(num_images_per_prompt=2.0), r"`num_images_per_prompt` must be an integer >= 1, got 2.0"),
    (BOTH, dict(max_batch_size=0), r"`max_batch_size` must be an integer >= 1, got 0"),
    (("diffusion_pipe",), dict(guidance_scale="3"), r"`guidance_scale` must be a number, got str '3'"),
    (("diffusion_pipe",), dict(guidance_scale=float("inf")), r"`guidance_scale` must be a finite number, got inf"),
    (("diffusion_pipe",), dict(guidance_scale=float("nan")), r"`guidance_scale` must be a finite number, got nan"),
    (("diffusion_pipe",), dict(guidance_scale=None), r"`guidance_scale` must be a number, got NoneType"),
    (("diffusion_pipe",), dict(num_inference_steps=True), r"`num_inference_steps` must be an integer >= 1, got True"),
    (("diffusion_pipe",), dict(num_inference_steps=20.0), r"`num_inference_steps` must be an integer >= 1, got 20.0"),
    (("diffusion_pipe",), dict(height=True), r"`height` must be a positive multiple of 2 .* got True"),
    (("diffusion_pipe",), dict(latents=np.zeros((2, 3, 32, 32), np.float32)), r"`latents` must be a torch.Tensor, got ndarray \(convert a numpy array"),
    (("diffusion_pipe",), dict(latents=torch.full((2, 3, 32, 32), float("nan"))), r"`latents` contains NaN or inf"),
    (("diffusion_pipe",), dict(latents=torch.zeros((2, 3, 32, 32), dtype=torch.int64)), r"`latents` must be a floating-point tensor"),
    (("diffusion_pipe",), dict(height=1024, width=1024), r"1024x1024 is 1024 times the pixels of the 32x32 images this model was trained at"),
    (("diffusion_pipe",), dict(num_inference_steps=1000), r"`num_inference_steps`=1000: DPMSolverMultistepScheduler repeats timestep \d+"),
    (("decoder_pipe",), dict(noise=np.zeros((2, 4), np.float32)), r"`noise` must be a torch.Tensor, got ndarray"),
    (("decoder_pipe",), dict(noise=torch.tensor([[0.0, float("inf"), 0, 0]] * 2)), r"`noise` contains NaN or inf"),
]


@pytest.mark.parametrize(
    "pipe_name, kwargs, message",
    [(name, kwargs, message) for names, kwargs, message in PIPELINE_CASES for name in names],
    ids=[f"{name}-{'-'.join(kwargs)}={list(kwargs.values())[0]!r}"[:60] for names, kwargs, _ in PIPELINE_CASES for name in names],
)
def test_pipeline_input_errors(request, pipe_name, kwargs, message):
    pipe = request.getfixturevalue(pipe_name)
    kwargs = {"prompt": PROMPTS, "output_type": "pt", **kwargs}
    if pipe_name == "diffusion_pipe":
        kwargs.setdefault("num_inference_steps", 2)
    with pytest.raises(ValueError, match=message):
        pipe(**kwargs)


@pytest.mark.parametrize("pipe_name", BOTH)
def test_overlong_prompt_is_truncated_with_exactly_one_warning(request, pipe_name, caplog):
    pipe = request.getfixturevalue(pipe_name)
    long_prompt = " ".join(["a red circle left of a blue square"] * 6)  # far over the limit of 16 tokens
    assert len(pipe.tokenizer(long_prompt, verbose=False)["input_ids"]) > pipe.tokenizer.model_max_length
    kwargs = {"num_inference_steps": 2} if pipe_name == "diffusion_pipe" else {}
    with caplog.at_level(logging.WARNING):
        first = pipe([long_prompt, long_prompt], output_type="pt", generator=torch.Generator().manual_seed(0), **kwargs).images
        pipe([long_prompt], output_type="pt", **kwargs)  # a second call does not warn again
    (warning,) = [r for r in caplog.records if r.levelno >= logging.WARNING]  # ours only: not transformers' own too
    assert "longer than the tokenizer's limit of 16 tokens and was truncated" in warning.getMessage()
    assert first.shape == (2, 3, 32, 32) and torch.isfinite(first).all()


# ---- data ------------------------------------------------------------------------------------------------------------
def image_folder(root, n=6, bad=()):
    """An imagefolder of n PNGs with captions; rows in `bad` get a corrupt (2) or truncated (others) file."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        path = root / f"{i}.png"
        Image.fromarray(np.full((40, 40, 3), 30 * i, np.uint8)).save(path)
        if i in bad:
            path.write_bytes(b"not an image" if i % 2 == 0 else path.read_bytes()[:60])
        rows.append({"file_name": path.name, "text": f"picture {i}"})
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def toy_dataset(n=4):
    features = datasets.Features({"img": datasets.Image(), "caption": datasets.Value("string")})
    images = [Image.new("RGB", (32, 32), "white")] * n
    return datasets.Dataset.from_dict({"img": images, "caption": [f"c{i}" for i in range(n)]}, features=features)


DATA_CASES = [
    ("missing image column", dict(dataset_name=datasets.DatasetDict({"train": toy_dataset()}), image_column="image", caption_column="caption"),
     r"image_column='image' is not a column .* its columns are \['img', 'caption'\]"),
    ("missing caption column", dict(dataset_name=datasets.DatasetDict({"train": toy_dataset()}), image_column="img", caption_column="text"),
     r"caption_column='text' is not a column .* its columns are \['img', 'caption'\]"),
    ("empty data set", dict(dataset_name=datasets.DatasetDict({"train": toy_dataset(0)}), image_column="img", caption_column="caption"),
     r"split 'train' is empty"),
    ("unknown split", dict(dataset_name=datasets.DatasetDict({"train": toy_dataset()}), split="validation", image_column="img", caption_column="caption"),
     r"Split 'validation' not found .* available splits: \['train'\]"),
]


@pytest.mark.parametrize("case, kwargs, message", DATA_CASES, ids=[c[0] for c in DATA_CASES])
def test_data_errors(case, kwargs, message):
    with pytest.raises(ValueError, match=message):
        load_image_text_dataset(**kwargs)


def test_undecodable_images_are_skipped_and_counted(tmp_path, caplog):
    data = load_image_text_dataset(train_data_dir=image_folder(tmp_path / "folder", n=6, bad=(2, 3)))
    with caplog.at_level(logging.WARNING, logger="hf_textimg.training.loop"):
        decoded = TensorImageTextDataset.from_dataset(data, 32, "image", "text")
    assert len(decoded) == 4 and decoded.images.shape == (4, 3, 32, 32)
    assert decoded.captions == ["picture 0", "picture 1", "picture 4", "picture 5"]  # captions stay with their images
    (warning,) = [r.getMessage() for r in caplog.records if "Skipped" in r.getMessage()]
    assert "Skipped 2 of 6 images in column 'image'" in warning and "rows [2, 3]" in warning and "2.png" in warning
    # a class column (train_decoder.py --class_column) stays with its images too; values match class names as text
    labelled = data.add_column("label", [0, 1, 2, 1, 0, 7])
    decoded = TensorImageTextDataset.from_dataset(labelled, 32, "image", "text", "label", ["0", "1"])
    assert decoded.extras["class_labels"].tolist() == [0, 1, 0, -1]  # rows 0, 1, 4, 5; 7 is no known class


def test_a_split_where_no_image_decodes_is_an_error(tmp_path):
    data = load_image_text_dataset(train_data_dir=image_folder(tmp_path / "folder", n=2, bad=(0, 1)))
    with pytest.raises(ValueError, match=r"None of the 2 images in column 'image' could be decoded .*row 0"):
        TensorImageTextDataset.from_dataset(data, 32, "image", "text")
    strings = datasets.Dataset.from_dict({"image": ["a.png", "b.png"], "text": ["a", "b"]})
    with pytest.raises(ValueError, match=r"a str, not an image.*--image_column"):
        TensorImageTextDataset.from_dataset(strings, 32, "image", "text")


# ---- loading saved models ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A saved ConceptTextModel, ConceptModel and ConceptAutoencoder, and broken copies of them."""
    root = tmp_path_factory.mktemp("saved")
    text_config = dict(vocab_size=50, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, max_position_embeddings=8)
    ConceptTextModel(ConceptTextConfig(**text_config, projection_dim=16)).save_pretrained(root / "text")
    ConceptModel(ConceptConfig(text_config=text_config, vision_config=dict(base_channels=8, num_stages=2, norm_num_groups=4),
                               projection_dim=16)).save_pretrained(root / "dual")
    ConceptAutoencoder(code_dim=16, encoder_block_out_channels=(8, 16), decoder_block_out_channels=(16, 8), norm_num_groups=4).save_pretrained(root / "ae")

    for name, weights, pickled in (("text", "model.safetensors", "pytorch_model.bin"),
                                   ("ae", "diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")):
        shutil.copytree(root / name, root / f"{name}-truncated")
        path = root / f"{name}-truncated" / weights
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # a download cut short

        (root / f"{name}-noconfig").mkdir()
        shutil.copy(root / name / weights, root / f"{name}-noconfig")

        shutil.copytree(root / name, root / f"{name}-pickle", ignore=shutil.ignore_patterns("*.safetensors"))
        torch.save(load_file(root / name / weights), root / f"{name}-pickle" / pickled)  # what save_pretrained used to write

    (root / "bert").mkdir()
    BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32).save_pretrained(root / "bert")
    shutil.copy(root / "text" / "model.safetensors", root / "bert")
    return root


LOADING_CASES = [
    # (loader, folder, error, message)
    (ConceptTextModel, "text-truncated", ValueError, r"text-truncated/model.safetensors is truncated or corrupt"),
    (AutoModel, "text-truncated", ValueError, r"model.safetensors is truncated or corrupt"),
    (ConceptAutoencoder, "ae-truncated", ValueError, r"diffusion_pytorch_model.safetensors is truncated or corrupt"),
    (ConceptTextModel, "text-noconfig", OSError, r"text-noconfig has no config.json, so it is not a saved ConceptTextModel"),
    (ConceptAutoencoder, "ae-noconfig", OSError, r"ae-noconfig has no config.json, so it is not a saved ConceptAutoencoder"),
    (ConceptTextModel, "bert", ValueError, r"describes a 'bert' model \(model_type\), but ConceptTextModel loads 'concept_text_model', 'concept'"),
    (ConceptModel, "text", ValueError, r"describes a 'concept_text_model' model \(model_type\), but ConceptModel loads 'concept'"),
    (ConceptVisionModel, "text", ValueError, r"describes a 'concept_text_model' model .* ConceptVisionModel loads"),
    (ConceptTextModel, "ae", ValueError, r"has no 'model_type': it is another kind of model"),
    (ConceptAutoencoder, "text", ValueError, r"has no '_class_name': it is another kind of model"),
    (ConceptDecoder, "ae", ValueError, r"describes a 'ConceptAutoencoder' model \(_class_name\), but ConceptDecoder loads 'ConceptDecoder'"),
    (ConceptTextModel, "text-pickle", ValueError, r"holds only pickle weights \(pytorch_model.bin\); ConceptTextModel reads safetensors only"),
    (AutoModel, "text-pickle", ValueError, r"holds only pickle weights \(pytorch_model.bin\)"),
    (ConceptAutoencoder, "ae-pickle", ValueError, r"holds only pickle weights \(diffusion_pytorch_model.bin\)"),
]


@pytest.mark.parametrize(
    "loader, folder, error, message", LOADING_CASES, ids=[f"{c[0].__name__}-{c[1]}" for c in LOADING_CASES]
)
def test_loading_errors(saved, monkeypatch, loader, folder, error, message):
    def no_unpickling(*args, **kwargs):
        raise AssertionError("torch.load was called: a pickle was about to be read")

    monkeypatch.setattr(torch, "load", no_unpickling)
    with pytest.raises(error, match=message):
        loader.from_pretrained(saved / folder)


def test_good_folders_still_load(saved):
    # the checks refuse only what is broken: a tower loads its half of a dual checkpoint, as before
    assert isinstance(ConceptTextModel.from_pretrained(saved / "dual"), ConceptTextModel)
    assert isinstance(ConceptVisionModel.from_pretrained(saved / "dual"), ConceptVisionModel)
    assert isinstance(AutoModel.from_pretrained(saved / "text"), ConceptTextModel)
    assert isinstance(ConceptAutoencoder.from_pretrained(saved / "ae"), ConceptAutoencoder)


def test_pipeline_with_a_pickle_only_component_is_refused(diffusion_pipe, tmp_path, monkeypatch):
    diffusion_pipe.save_pretrained(tmp_path)
    unet = tmp_path / "unet" / "diffusion_pytorch_model.safetensors"
    torch.save(load_file(unet), unet.with_suffix(".bin"))
    unet.unlink()
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load was called"))
    with pytest.raises(ValueError, match=r"unet holds only pickle weights \(diffusion_pytorch_model.bin\)"):
        ConceptDiffusionPipeline.from_pretrained(tmp_path)


# ---- training arguments ------------------------------------------------------------------------------------------------
AUTOENCODER = [
    "--dataset_name", "shapes", "--num_shapes_train", "64", "--num_shapes_eval", "8", "--train_batch_size", "8",
    "--code_dim", "16", "--encoder_block_out_channels", "8", "16", "--decoder_block_out_channels", "16", "8",
    "--norm_num_groups", "4", "--max_train_steps", "1", "--validation_steps", "1",
]


@pytest.fixture
def read_only_dir(tmp_path, monkeypatch):
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    if os.access(folder, os.W_OK):  # root ignores permission bits: make os.access answer as for anyone else
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if str(path).startswith(str(folder)) else real_access(path, mode, **kw))
    yield folder
    folder.chmod(0o755)


TRAINING_CASES = [
    ("resolution the Shapes world has not", ["--resolution", "48"], r"--resolution 48 is not a size the Shapes world is drawn at; use one of \(32, 64, 128\)"),
    ("non-positive resolution", ["--resolution", "0"], r"--resolution must be a positive integer, got 0"),
    ("unwritable output_dir", ["--output_dir", "{read_only}/run"], r"--output_dir .*read-only/run' is not writable"),
    ("resume from a missing checkpoint", ["--resume_from_checkpoint", "{tmp}/run/checkpoint-500"],
     r"--resume_from_checkpoint '.*checkpoint-500' is not a checkpoint folder \(no trainer_state.json\)"),
    ("non-positive ddp_timeout", ["--ddp_timeout", "0"], r"--ddp_timeout must be >= 1 second, got 0"),
    ("wrong number of kind weights", ["--shapes_kind_probs", "0.5", "0.5"], r"--shapes_kind_probs: kind_probs must be 4 non-negative weights"),
    ("data set smaller than one batch", ["--max_train_samples", "4"],
     r"training set \(4 examples\) is smaller than one batch of --train_batch_size 8 x 1 processes"),
]


@pytest.mark.parametrize("case, extra, message", TRAINING_CASES, ids=[c[0] for c in TRAINING_CASES])
def test_training_argument_errors(case, extra, message, tmp_path, read_only_dir):
    extra = [a.format(read_only=read_only_dir, tmp=tmp_path) for a in extra]
    args = AUTOENCODER + ["--output_dir", str(tmp_path / "run")] + extra
    with pytest.raises(ValueError, match=message):
        train_autoencoder.main(args)


def test_ddp_timeout_reaches_the_process_group_settings(tmp_path):
    from hf_textimg.training.config import TrainConfig
    from hf_textimg.training.loop import build_accelerator

    accelerator = build_accelerator(TrainConfig(dataset_name="shapes", output_dir=str(tmp_path), ddp_timeout=123))
    assert accelerator.init_handler.timeout.total_seconds() == 123  # what accelerate passes to init_process_group


@pytest.mark.parametrize("distributed_type", ["FSDP", "DEEPSPEED"])
def test_sharded_training_is_refused(distributed_type, tmp_path, monkeypatch):
    # checkpoints are full safetensors written by the main process, which sharded weights / optimizer states break
    from accelerate import Accelerator
    from accelerate.utils import DistributedType

    monkeypatch.setattr(Accelerator, "distributed_type", property(lambda self: DistributedType[distributed_type]))
    with pytest.raises(ValueError, match=rf"accelerate is configured for {distributed_type}.*support one process or DDP only"):
        train_autoencoder.main(AUTOENCODER + ["--output_dir", str(tmp_path / "run")])


def test_resume_latest_without_a_checkpoint_starts_fresh_with_a_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="hf_textimg.training.checkpointing"):
        assert resolve_resume_path("latest", str(tmp_path)) is None
    assert "no checkpoint in" in caplog.text and "starting a new run" in caplog.text
    result = train_autoencoder.main(AUTOENCODER + ["--output_dir", str(tmp_path / "run"), "--resume_from_checkpoint", "latest"])
    assert result["global_step"] == 1

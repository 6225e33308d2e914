"""Saved pipelines carry their code (hf_textimg.remote_code): in a fresh `python -I` where `import hf_textimg`
fails, `DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)` loads each kind of pipeline and draws
the same images, bit for bit, as the installed package; with the package, the plain call still loads the installed
classes. (The same over the loopback Hub: tests/test_hub.py.)"""

import ast
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from diffusers import DiffusionPipeline
from safetensors.torch import load_file, save_file

from hf_textimg.decoder import ConceptDecoder
from hf_textimg.pipelines import ConceptCascadePipeline, ConceptDiffusionPipeline, ConceptPriorPipeline, ConceptUnCLIPPipeline, DecoderPipeline
from hf_textimg.prior import build_prior, prior_noise_scheduler
from hf_textimg.remote_code import PIPELINE_CLASSES, concept_source, decoder_source, pipeline_source, write_remote_code
from hf_textimg.pretrained import available_models, pretrained_path
from no_package import BLOCK_HF_TEXTIMG
from tiny_pipelines import PROMPTS, tiny_base, tiny_stage

SHIPPED_MODELS = available_models()

REPO_ROOT = Path(__file__).resolve().parent.parent

# Without hf_textimg (no_package.py), loads every folder named on the command line with trust_remote_code and draws images as the parent process did.
LOAD_WITHOUT_PACKAGE = BLOCK_HF_TEXTIMG + """
import json
import torch
from diffusers import DiffusionPipeline
from safetensors.torch import load_file, save_file

jobs, out = json.loads(sys.argv[1]), sys.argv[2]
images, classes = {}, {}
for name, job in jobs.items():
    pipe = DiffusionPipeline.from_pretrained(job["folder"], trust_remote_code=True)
    pipe.set_progress_bar_config(disable=True)
    kwargs = dict(job["kwargs"])
    if "image" in kwargs:
        kwargs["image"] = load_file(kwargs["image"])["image"]
    images[name] = pipe(generator=torch.Generator().manual_seed(0), output_type="pt", **kwargs).images
    classes[name] = [type(c).__module__ + "." + type(c).__name__ for c in (pipe, *pipe.components.values()) if c is not None]
save_file(images, out)
print(json.dumps({"classes": classes, "hf_textimg_modules": sorted(m for m in sys.modules if m.split(".")[0] == "hf_textimg")}))
"""


def run_isolated(code: str, args: list[str], cwd: Path, env_extra: dict | None = None) -> tuple[dict, str]:
    """`python -I -c code args` with the Hub offline and its own module cache; returns (last stdout line as JSON, stderr)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "PYTHON"))}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(cwd / "hf-home"), OMP_NUM_THREADS="1", **(env_extra or {}))
    proc = subprocess.run([sys.executable, "-I", "-c", textwrap.dedent(code), *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-6000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def tiny_decoder_pipeline() -> DecoderPipeline:
    base = tiny_base(seed=3)
    torch.manual_seed(3)
    decoder = ConceptDecoder(code_dim=32, noise_dim=4, block_out_channels=(16, 16, 8, 8), norm_num_groups=4).eval()
    pipe = DecoderPipeline(base.tokenizer, base.text_encoder, decoder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_unclip_pipeline() -> ConceptUnCLIPPipeline:
    """Prior (diffusers' PriorTransformer: no code file) + decoder on a tiny text tower (random weights)."""
    decoder_pipe = tiny_decoder_pipeline()
    torch.manual_seed(4)
    prior = build_prior(embedding_dim=32, text_embed_dim=32, text_hidden_size=32, max_length=16, num_layers=1, num_attention_heads=2, attention_head_dim=8)
    prior_pipe = ConceptPriorPipeline(decoder_pipe.tokenizer, decoder_pipe.text_encoder, prior.eval(), prior_noise_scheduler())
    pipe = ConceptUnCLIPPipeline.from_parts(prior_pipe, decoder_pipe)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Each kind of pipeline saved to a folder, with the images the installed package draws from it."""
    work = tmp_path_factory.mktemp("remote-code")
    base = tiny_base(prompt_normalization="shapes_relations")
    stage = tiny_stage(base)
    low_res = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    save_file({"image": low_res}, work / "low_res.safetensors")
    pipes = {
        "diffusion": (base, {"prompt": PROMPTS + ["a blue square right of a red circle"], "num_inference_steps": 3}),
        "superres": (stage, {"prompt": PROMPTS, "image": str(work / "low_res.safetensors"), "num_inference_steps": 2}),
        "cascade": (ConceptCascadePipeline.from_stages(base, stage), {"prompt": PROMPTS[:1], "num_inference_steps": 2}),
        "decoder": (tiny_decoder_pipeline(), {"prompt": PROMPTS}),
        "unclip": (tiny_unclip_pipeline(), {"prompt": PROMPTS, "num_inference_steps": 3, "num_images_per_prompt": 2}),
    }
    jobs, images = {}, {}
    for name, (pipe, kwargs) in pipes.items():
        folder = work / name
        pipe.save_pretrained(folder)
        loaded = DiffusionPipeline.from_pretrained(folder)  # the plain call: the installed classes
        assert type(loaded) is type(pipe)
        loaded.set_progress_bar_config(disable=True)
        call_kwargs = {**kwargs, "image": low_res} if "image" in kwargs else kwargs
        images[name] = loaded(generator=torch.Generator().manual_seed(0), output_type="pt", **call_kwargs).images
        jobs[name] = {"folder": str(folder), "kwargs": kwargs}
    return work, jobs, images


def test_bundles_are_self_contained():
    for source in (pipeline_source(), decoder_source(), concept_source()):
        tree = ast.parse(source)
        # diffusers scans code files with these patterns: any hit would be imported (hf_textimg) or copied (.x)
        assert not re.findall(r"^\s*(?:from|import)\s+(?:hf_textimg|\.)", source, flags=re.MULTILINE)
        assert tree.body[1].module == "__future__"  # right after the docstring, as Python requires
    defined = {n.name for n in ast.parse(pipeline_source()).body if isinstance(n, ast.ClassDef)}
    assert set(PIPELINE_CLASSES) <= defined and "register_with_diffusers(" not in pipeline_source()
    assert "class ConceptDecoder(" in decoder_source()


def test_saved_folder_names_its_code(saved):
    work, jobs, _ = saved
    index = json.loads((work / "decoder" / "model_index.json").read_text())
    assert index["_class_name"] == ["pipeline_hf_textimg", "DecoderPipeline"]
    assert index["text_encoder"] == ["modeling_concept", "ConceptTextModel"] and index["decoder"] == ["modeling_decoder", "ConceptDecoder"]
    assert (work / "decoder" / "pipeline_hf_textimg.py").read_text() == pipeline_source()
    assert (work / "decoder" / "decoder" / "modeling_decoder.py").read_text() == decoder_source()
    config = json.loads((work / "decoder" / "text_encoder" / "config.json").read_text())
    assert config["auto_map"] == {"AutoConfig": "modeling_concept.ConceptTextConfig", "AutoModel": "modeling_concept.ConceptTextModel"}
    # one file per component: a Hub download fetches only the file model_index.json names
    assert sorted(p.name for p in (work / "decoder" / "text_encoder").glob("*.py")) == ["modeling_concept.py"]
    assert (work / "decoder" / "text_encoder" / "modeling_concept.py").read_text() == concept_source()
    unclip = json.loads((work / "unclip" / "model_index.json").read_text())
    assert unclip["_class_name"] == ["pipeline_hf_textimg", "ConceptUnCLIPPipeline"] and unclip["prior"] == ["diffusers", "PriorTransformer"]
    assert unclip["decoder"] == ["modeling_decoder", "ConceptDecoder"] and not list((work / "unclip" / "prior").glob("*.py"))
    before = {p: p.read_bytes() for p in (work / "cascade").rglob("*") if p.is_file()}
    write_remote_code(work / "cascade")  # idempotent
    assert before == {p: p.read_bytes() for p in (work / "cascade").rglob("*") if p.is_file()}


def test_pipelines_load_without_the_package(saved, tmp_path):
    work, jobs, images = saved
    result, stderr = run_isolated(LOAD_WITHOUT_PACKAGE, [json.dumps(jobs), str(tmp_path / "images.safetensors")], tmp_path)
    assert result["hf_textimg_modules"] == []
    for name, classes in result["classes"].items():
        assert classes[0].startswith("diffusers_modules.local.pipeline_hf_textimg."), classes
    assert "diffusers_modules.local.modeling_concept.ConceptTextModel" in result["classes"]["diffusion"]
    assert "diffusers_modules.local.modeling_decoder.ConceptDecoder" in result["classes"]["decoder"]
    # the remote components are the classes the remote pipeline expects; diffusers finds every import it scans for
    assert not re.search(r"Expected types for (text_encoder|decoder|unet)", stderr), stderr[-3000:]
    assert "might require the following packages" not in stderr, stderr[-3000:]
    remote = load_file(tmp_path / "images.safetensors")
    for name, expected in images.items():
        assert torch.equal(remote[name], expected), name


def test_trust_remote_code_with_the_package_uses_the_folder_code(saved):
    work, _, _ = saved
    remote = DiffusionPipeline.from_pretrained(str(work / "diffusion"), trust_remote_code=True)
    assert type(remote).__module__.endswith("pipeline_hf_textimg") and type(remote) is not ConceptDiffusionPipeline
    assert type(DiffusionPipeline.from_pretrained(work / "diffusion")) is ConceptDiffusionPipeline  # still the installed class
    assert type(ConceptDiffusionPipeline.from_pretrained(work / "diffusion")) is ConceptDiffusionPipeline


@pytest.mark.parametrize("name", SHIPPED_MODELS)
def test_shipped_models_carry_the_current_code(name):
    """The shipped folders' code files are the package's code now; after changing a pipeline module run
    `python -m hf_textimg.remote_code hf_textimg/pretrained/*/`."""
    folder = pretrained_path(name)
    assert json.loads((folder / "model_index.json").read_text())["_class_name"][0] == "pipeline_hf_textimg"
    assert (folder / "pipeline_hf_textimg.py").read_text() == pipeline_source(), "run: python -m hf_textimg.remote_code hf_textimg/pretrained/*/"
    assert (folder / "text_encoder" / "modeling_concept.py").read_text() == concept_source()


def test_shipped_model_loads_without_the_package(tmp_path):
    folder = pretrained_path("shapes-diffusion-32")
    kwargs = {"prompt": ["a blue square right of a red circle", "two green triangles"], "num_inference_steps": 5}
    pipe = DiffusionPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    expected = pipe(generator=torch.Generator().manual_seed(0), output_type="pt", **kwargs).images
    jobs = {"shipped": {"folder": str(folder), "kwargs": kwargs}}
    run_isolated(LOAD_WITHOUT_PACKAGE, [json.dumps(jobs), str(tmp_path / "images.safetensors")], tmp_path)
    assert torch.equal(load_file(tmp_path / "images.safetensors")["shipped"], expected)

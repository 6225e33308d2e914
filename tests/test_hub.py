"""Push and pull over real HTTP: training scripts push to a loopback Hub (`tests/hub_server.py`),
pipelines and the concept model load back from it, and the same repo loads through olah.

huggingface_hub reads HF_ENDPOINT / HF_HUB_OFFLINE / HF_HUB_DISABLE_XET when it is imported, and
the rest of the suite has imported it (offline) long before these tests run. So every client
runs in a subprocess whose environment points at the server before anything is imported; the
servers themselves run here (the loopback Hub in a thread, olah as a process).
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hub_server import HubServer
from no_package import BLOCK_HF_TEXTIMG

REPO_ROOT = Path(__file__).resolve().parent.parent
TOKEN = "hf_loopback_secret_token"

CONCEPT_TINY = [
    "--dataset_name", "shapes", "--num_shapes_train", "64", "--num_shapes_eval", "16", "--max_eval_samples", "16",
    "--train_batch_size", "16", "--text_hidden_size", "32", "--text_num_layers", "1", "--text_num_heads", "2",
    "--vision_base_channels", "16", "--vision_num_stages", "2", "--projection_dim", "32", "--max_length", "16",
    "--tokenizer_vocab_size", "128", "--max_train_steps", "4", "--checkpointing_steps", "4", "--validation_steps", "4",
]
DIFFUSION_TINY = [
    "--dataset_name", "shapes", "--num_shapes_train", "64", "--num_shapes_eval", "16", "--train_batch_size", "8",
    "--max_length", "16", "--tokenizer_vocab_size", "128", "--unet_block_out_channels", "16", "32",
    "--unet_attention_head_dim", "8", "--unet_norm_num_groups", "8", "--train_text_encoder", "--text_hidden_size", "32",
    "--text_num_layers", "1", "--text_num_heads", "2", "--projection_dim", "32",
    "--eval_prompts_per_category", "1", "--eval_num_inference_steps", "2", "--validation_images_per_prompt", "1",
    "--max_train_steps", "4", "--checkpointing_steps", "2", "--validation_steps", "4",
]
PROMPTS = ["a red circle at the top left", "two blue squares"]

# Trains and pushes both models (token from --hub_token only), then pulls the pipeline back.
PUBLISH = """
import json, sys
from pathlib import Path

import torch
from safetensors.torch import save_file

work, token = Path(sys.argv[1]), sys.argv[2]
concept_args, diffusion_args, prompts = json.loads(sys.argv[3]), json.loads(sys.argv[4]), json.loads(sys.argv[5])

from training.train_concept import main as train_concept
from training.train_diffusion import main as train_diffusion

train_concept(concept_args + ["--output_dir", str(work / "concept"), "--push_to_hub", "--hub_model_id", "org/tiny-concept",
                              "--hub_token", token])
# A bare repo name goes under the token's user; the repo is private.
train_diffusion(diffusion_args + ["--output_dir", str(work / "diffusion"), "--push_to_hub", "--hub_model_id", "tiny-diffusion",
                                  "--hub_private_repo", "--hub_token", token])

import hf_textimg  # noqa: F401
from diffusers import DiffusionPipeline
from transformers import AutoModel, AutoTokenizer

def generate(pipe):
    pipe.set_progress_bar_config(disable=True)
    return pipe(prompts, num_inference_steps=4, output_type="pt", generator=torch.Generator().manual_seed(0)).images

local = DiffusionPipeline.from_pretrained(work / "diffusion")
pulled = DiffusionPipeline.from_pretrained("tester/tiny-diffusion", token=token, cache_dir=work / "pull-cache")
save_file({"local": generate(local), "pulled": generate(pulled)}, work / "diffusion-images.safetensors")

model = AutoModel.from_pretrained(work / "concept")
batch = AutoTokenizer.from_pretrained(work / "concept")(prompts, padding=True, truncation=True, return_tensors="pt")
with torch.no_grad():
    features = model.get_text_features(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).pooler_output
save_file({"text": features}, work / "concept-features.safetensors")
# The pushed last-checkpoint/ resumes training (its tokenizer/ sits beside it in the snapshot).
from huggingface_hub import snapshot_download

snapshot = snapshot_download("tester/tiny-diffusion", token=token, allow_patterns=["last-checkpoint/*", "tokenizer/*"])
resumed = train_diffusion(diffusion_args + ["--max_train_steps", "6", "--output_dir", str(work / "resumed"),  # the last flag wins
                                            "--resume_from_checkpoint", f"{snapshot}/last-checkpoint"])
print(json.dumps({"pulled_from": str(pulled.name_or_path), "resumed_steps": [step for step, _ in resumed["loss_history"]]}))
"""

# Loads the concept model from the Hub where hf_textimg cannot be imported: `python -I` leaves the
# repository (cwd, PYTHONPATH) off sys.path, and this finder refuses the editable install's mapping.
PULL_CONCEPT_WITHOUT_PACKAGE = BLOCK_HF_TEXTIMG + """
import json
import torch
from safetensors.torch import save_file
from transformers import AutoModel, AutoTokenizer

model = AutoModel.from_pretrained("org/tiny-concept", trust_remote_code=True)
tokenizer = AutoTokenizer.from_pretrained("org/tiny-concept", trust_remote_code=True)
batch = tokenizer(json.loads(sys.argv[2]), padding=True, truncation=True, return_tensors="pt")
with torch.no_grad():
    features = model.get_text_features(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).pooler_output
save_file({"text": features}, sys.argv[1])
print(json.dumps({"class": type(model).__module__ + "." + type(model).__name__,
                  "hf_textimg_modules": sorted(m for m in sys.modules if m.split(".")[0] == "hf_textimg")}))
"""

# The pushed pipeline, pulled where hf_textimg cannot be imported (as above), with the code its repo carries.
PULL_PIPELINE_WITHOUT_PACKAGE = BLOCK_HF_TEXTIMG + """
import json
import torch
from diffusers import DiffusionPipeline
from safetensors.torch import save_file

pipe = DiffusionPipeline.from_pretrained("tester/tiny-diffusion", trust_remote_code=True)
pipe.set_progress_bar_config(disable=True)
images = pipe(json.loads(sys.argv[2]), num_inference_steps=4, output_type="pt", generator=torch.Generator().manual_seed(0)).images
save_file({"images": images}, sys.argv[1])
print(json.dumps({"class": type(pipe).__module__ + "." + type(pipe).__name__,
                  "text_encoder": type(pipe.text_encoder).__module__,
                  "hf_textimg_modules": sorted(m for m in sys.modules if m.split(".")[0] == "hf_textimg")}))
"""

PULL_THROUGH_OLAH = """
import json, sys
import torch
from safetensors.torch import save_file

import hf_textimg  # noqa: F401
from diffusers import DiffusionPipeline

pipe = DiffusionPipeline.from_pretrained("org/tiny-diffusion", revision="main")
pipe.set_progress_bar_config(disable=True)
images = pipe(json.loads(sys.argv[2]), num_inference_steps=4, output_type="pt", generator=torch.Generator().manual_seed(0)).images
save_file({"images": images}, sys.argv[1])
try:  # olah in offline mode answers only revision-qualified repo look-ups
    DiffusionPipeline.from_pretrained("org/tiny-diffusion", cache_dir=sys.argv[1] + "-cache")
    no_revision = "loaded"
except Exception as e:
    no_revision = type(e).__name__
print(json.dumps({"no_revision": no_revision}))
"""


def client_env(endpoint: str, home: Path, token: str | None = None) -> dict:
    """A clean Hub-client environment: online, pointed at `endpoint`, with its own cache and no saved token."""
    env = {k: v for k, v in os.environ.items()
           if k.startswith("HF_TEXTIMG") or not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_", "DIFFUSERS_"))}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(home), HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_TELEMETRY="1",
               HF_HUB_DISABLE_PROGRESS_BARS="1", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO_ROOT))
    if token:
        env["HF_TOKEN"] = token
    return env


def run_python(code: str, args: list[str], env: dict, cwd: Path, isolated: bool = False) -> dict:
    cmd = [sys.executable, *(["-I"] if isolated else []), "-c", textwrap.dedent(code), *args]
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-6000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    server = HubServer(tmp_path_factory.mktemp("hub-storage"), token=TOKEN).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def published(hub, tmp_path_factory):
    """Both training scripts run with --push_to_hub against the loopback Hub; returns their work folder."""
    work = tmp_path_factory.mktemp("publish")
    result = run_python(PUBLISH, [str(work), TOKEN, json.dumps(CONCEPT_TINY), json.dumps(DIFFUSION_TINY), json.dumps(PROMPTS)],
                        client_env(hub.url, work / "hf-home"), cwd=work)
    (work / "publish.json").write_text(json.dumps(result))
    return work


def repo_files(hub, repo_id: str):
    repo = hub.state.repos[("model", repo_id)]
    return repo, repo.commits[repo.branches["main"]].tree


def test_training_pushes_at_checkpoints_and_at_the_end(hub, published):
    repo, files = repo_files(hub, "tester/tiny-diffusion")
    titles = []
    sha = repo.branches["main"]
    while sha is not None:
        titles.append(repo.commits[sha].title)
        sha = repo.commits[sha].parent
    assert titles[::-1] == ["initial commit", "Training in progress, step 2", "Training in progress, step 4", "End of training"]
    assert repo.private
    for path in ["README.md", "model_index.json", "eval_results.json", "scheduler/scheduler_config.json",
                 "unet/config.json", "unet/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors",
                 "tokenizer/tokenizer.json", "validation/step-4.png", "last-checkpoint/trainer_state.json",
                 "last-checkpoint/unet.safetensors", "last-checkpoint/optimizer.safetensors"]:
        assert path in files, path
    assert files["unet/diffusion_pytorch_model.safetensors"].lfs and not files["model_index.json"].lfs
    assert not [p for p in files if p.startswith(("checkpoint-", "logs/")) or p.endswith((".bin", ".pkl", ".pt", ".pth"))]
    assert json.loads((published / "diffusion" / "checkpoint-4" / "trainer_state.json").read_text())["global_step"] == 4
    # what was pushed is what is on disk, byte for byte
    local = published / "diffusion" / "unet" / "diffusion_pytorch_model.safetensors"
    assert hub.state.object_path(files["unet/diffusion_pytorch_model.safetensors"].sha256).read_bytes() == local.read_bytes()

    card = hub.state.object_path(files["README.md"].sha256).read_text()
    assert 'DiffusionPipeline.from_pretrained("tester/tiny-diffusion")' in card
    assert "--push_to_hub" in card and "last-checkpoint/" in card
    # the token passed with --hub_token is used, and written nowhere
    for path, entry in files.items():
        assert TOKEN.encode() not in hub.state.object_path(entry.sha256).read_bytes(), path
    assert "--hub_token '<hidden>'" in card or "--hub_token <hidden>" in card

    _, concept_files = repo_files(hub, "org/tiny-concept")
    assert {"config.json", "model.safetensors", "configuration_concept.py", "modeling_concept.py", "losses.py",
            "tokenizer.json", "README.md"} <= set(concept_files)


def test_pushed_checkpoint_resumes_training(published):
    assert json.loads((published / "publish.json").read_text())["resumed_steps"] == [5, 6]


def test_private_repo_needs_the_token(hub, published):
    url = f"{hub.url}/tester/tiny-diffusion/resolve/main/model_index.json"
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(url)
    assert err.value.code == 401
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})) as resp:
        assert json.loads(resp.read())["_class_name"] == ["pipeline_hf_textimg", "ConceptDiffusionPipeline"]


def test_pushed_pipeline_pulls_back_with_identical_images(hub, published):
    images = load_file(published / "diffusion-images.safetensors")
    assert images["local"].shape == (2, 3, 32, 32)
    assert torch.equal(images["local"], images["pulled"])
    # the pull really went over HTTP, into its own cache
    pulled = [p for m, p in hub.state.requests if m == "GET" and p.startswith("/tester/tiny-diffusion/resolve/")]
    assert any(p.endswith("unet/diffusion_pytorch_model.safetensors") for p in pulled)
    assert list((published / "pull-cache").rglob("diffusion_pytorch_model.safetensors"))


def test_concept_model_loads_from_the_hub_without_the_package(hub, published, tmp_path):
    out = tmp_path / "features.safetensors"
    # no token: the concept repo is public
    result = run_python(PULL_CONCEPT_WITHOUT_PACKAGE, [str(out), json.dumps(PROMPTS)], client_env(hub.url, tmp_path / "home"),
                        cwd=tmp_path, isolated=True)
    assert result["class"].startswith("transformers_modules.") and result["class"].endswith(".ConceptModel")
    assert result["hf_textimg_modules"] == []
    expected = load_file(published / "concept-features.safetensors")["text"]
    assert torch.equal(load_file(out)["text"], expected)


def test_pushed_pipeline_loads_from_the_hub_without_the_package(hub, published, tmp_path):
    out = tmp_path / "images.safetensors"
    result = run_python(PULL_PIPELINE_WITHOUT_PACKAGE, [str(out), json.dumps(PROMPTS)],
                        client_env(hub.url, tmp_path / "home", token=TOKEN), cwd=tmp_path, isolated=True)
    assert result["class"].endswith("pipeline_hf_textimg.ConceptDiffusionPipeline") and result["hf_textimg_modules"] == []
    assert result["text_encoder"].endswith("modeling_concept")
    repo, tree = repo_files(hub, "tester/tiny-diffusion")
    assert {"pipeline_hf_textimg.py", "text_encoder/modeling_concept.py"} <= set(tree)
    assert torch.equal(load_file(out)["images"], load_file(published / "diffusion-images.safetensors")["local"])


# ---- olah: a real self-hosted Hub mirror serving a local git repo ---------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def olah(published, tmp_path_factory):
    pytest.importorskip("olah", reason="olah is not installed (pip install -e '.[test]')")
    if shutil.which("git") is None:
        pytest.skip("olah serves git repos: git is not installed")
    root = tmp_path_factory.mktemp("olah")
    # olah's offline mode serves <mirrors-path>/models/<org>/<name> git repos: commit the trained pipeline folder.
    repo = root / "mirrors" / "models" / "org" / "tiny-diffusion"
    shutil.copytree(published / "diffusion", repo, ignore=shutil.ignore_patterns("checkpoint-*", "logs"))
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com", "-c", "init.defaultBranch=main"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "tiny diffusion pipeline"]):
        subprocess.run(git + args, cwd=repo, check=True, capture_output=True)
    port = _free_port()
    config = root / "olah.toml"
    config.write_text(textwrap.dedent(f"""
        [basic]
        host = "127.0.0.1"
        port = {port}
        mirror-netloc = "127.0.0.1:{port}"
        mirror-lfs-netloc = "127.0.0.1:{port}"
        repos-path = "{root / 'cache'}"
        mirrors-path = ["{root / 'mirrors'}"]

        [accessibility]
        offline = true
    """))
    log = open(root / "olah.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "olah.server", "-c", str(config)], cwd=root, stdout=log, stderr=subprocess.STDOUT,
                            env={k: v for k, v in os.environ.items() if not k.startswith("HF_")})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/models/org/tiny-diffusion/revision/main", timeout=2) as resp:
                    assert json.loads(resp.read())["id"] == "org/tiny-diffusion"
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    pytest.fail(f"olah did not start:\n{(root / 'olah.log').read_text()[-3000:]}")
                time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_pull_through_olah(olah, published, tmp_path):
    out = tmp_path / "images.safetensors"
    result = run_python(PULL_THROUGH_OLAH, [str(out), json.dumps(PROMPTS)], client_env(olah, tmp_path / "home"), cwd=tmp_path)
    expected = load_file(published / "diffusion-images.safetensors")["local"]
    assert torch.equal(load_file(out)["images"], expected)
    assert result["no_revision"] != "loaded"  # olah needs revision="main", as its docs say

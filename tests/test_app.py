"""The web app (`hf-textimg serve`, hf_textimg/app.py) served for real on 127.0.0.1: driven over its API with
gradio_client, in headless Chromium (Debian's `chromium`, through Playwright), and as a Space (spaces/)."""

import re
import subprocess
import sys
import time

import numpy as np
import pytest
from diffusers import DiffusionPipeline
from PIL import Image

from hf_textimg.cli import generate_images, main
from tests.mp_launch import REPO, free_port, subprocess_env
from tests.tiny_pipelines import tiny_base

gradio = pytest.importorskip("gradio", reason="the web app needs the app extra: pip install -e '.[app]' (make test installs it)")
pytest.importorskip("gradio_client", reason="gradio_client comes with gradio (the app extra)")
from gradio_client import Client  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from hf_textimg.app import DISPLAY_SIDE, build_demo, check_settings, generate, launch, model_choices  # noqa: E402
from hf_textimg.shapes import ShapesScorer  # noqa: E402
from tests.app_browser import chromium_path, generate_in_browser  # noqa: E402

PROMPT = "a red circle at the top left"


def api_args(model, prompt=PROMPT, negative_prompt="", num_images=3, steps=2, guidance=3.0, seed=7, scheduler="as saved") -> dict:
    return dict(model=model, prompt=prompt, negative_prompt=negative_prompt, num_images=num_images, steps=steps,
                guidance=guidance, seed=seed, scheduler=scheduler, api_name="/generate")


def shrink(path, side: int) -> np.ndarray:
    """A gallery file back at the model's size (the page enlarges by an integer factor, nearest neighbour)."""
    image = np.asarray(Image.open(path).convert("RGB"))
    step = image.shape[0] // side
    return image[::step, ::step]


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-diffusion")
    tiny_base().save_pretrained(folder, safe_serialization=True)
    return str(folder)


@pytest.fixture(scope="module")
def server(tiny_folder):
    """The app on a free port of 127.0.0.1 in this process, its Model box set to the tiny pipeline."""
    demo = build_demo(tiny_folder, device="cpu")
    port = free_port()
    launch(demo, "127.0.0.1", port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


@pytest.fixture(scope="module")
def client(server, tmp_path_factory):
    return Client(server, verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")))


def test_generate_over_the_api_gives_the_seeds_images_with_captions(client, tiny_folder):
    gallery, summary = client.predict(**api_args(tiny_folder))
    assert len(gallery) == 3
    # The same seed gives the same images as `hf-textimg generate` (one CPU generator, one pipeline call).
    pipe = DiffusionPipeline.from_pretrained(tiny_folder)
    pipe.set_progress_bar_config(disable=True)
    expected = generate_images(pipe, [PROMPT], 3, 7, num_inference_steps=2, guidance_scale=3.0)
    for item, image in zip(gallery, expected):
        assert Image.open(item["image"]).size == (DISPLAY_SIDE, DISPLAY_SIDE)  # 32 px enlarged 8x for the page
        np.testing.assert_array_equal(shrink(item["image"], 32), np.asarray(image))
    # Captions: the prompt, the image's number and the Shapes scorer's verdict on that very image.
    scorer = ShapesScorer()
    for k, (item, image) in enumerate(zip(gallery, expected), start=1):
        verdict = scorer.score(image, PROMPT)
        assert item["caption"].startswith(f"{PROMPT} · #{k} · scorer: ")
        for category, ok in verdict.items():
            assert f"{'✓' if ok else '✗'} {category}" in item["caption"]
    hits = sum(all(scorer.score(image, PROMPT).values()) for image in expected)
    assert "3 images in" in summary and " s**" in summary and "2 steps, guidance 3, DPMSolverMultistepScheduler, seed 7" in summary
    assert f"Shapes scorer: **{hits} of 3** images" in summary


def test_scheduler_negative_prompt_and_seed_change_what_is_made(client, tiny_folder):
    base, _ = client.predict(**api_args(tiny_folder, num_images=1))
    again, _ = client.predict(**api_args(tiny_folder, num_images=1))
    np.testing.assert_array_equal(shrink(base[0]["image"], 32), shrink(again[0]["image"], 32))  # deterministic
    for change in ({"seed": 8}, {"negative_prompt": "two blue squares"}, {"scheduler": "ddim"}):
        other, summary = client.predict(**api_args(tiny_folder, num_images=1, **change))
        assert not np.array_equal(shrink(base[0]["image"], 32), shrink(other[0]["image"], 32)), change
    assert "DDIMScheduler" in summary


def test_a_caption_the_shapes_world_cannot_ask_gets_no_verdict(client, tiny_folder):
    gallery, summary = client.predict(**api_args(tiny_folder, prompt="grinning face, noto style", num_images=1))
    assert gallery[0]["caption"] == "grinning face, noto style · #1"
    assert "no verdict (the prompt is not a Shapes-world caption)" in summary


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"prompt": "  "}, "Prompt: type a caption"),
        ({"model": "/no/such/folder"}, "Model: '/no/such/folder' does not exist"),
        ({"model": "nobody/no-such-model"}, "could not load --model 'nobody/no-such-model'"),
        ({"steps": 2.5}, "Steps: expected a whole number from 1 to 200, got 2.5"),
        # Out of a slider's or a dropdown's range: Gradio's components answer before the app's function runs.
        ({"num_images": 0}, "Value 0 is less than minimum value 1"),
        ({"guidance": -1}, "Value -1 is less than minimum value 0"),
        ({"scheduler": "fast"}, "Value: fast is not in the list of choices"),
    ],
)
def test_bad_input_is_answered_in_the_page(client, tiny_folder, change, message):
    """The page's error toast carries one line naming the field; gradio_client raises it as an AppError."""
    with pytest.raises(AppError) as caught:
        client.predict(**api_args(**{"model": tiny_folder, **change}))
    assert message in str(caught.value)
    assert "Traceback" not in str(caught.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"num_images": 17}, "Number of images: expected a whole number from 1 to 16, got 17"),
        ({"num_images": "many"}, "Number of images: expected a whole number from 1 to 16, got 'many'"),
        ({"seed": -1}, "Seed: expected a whole number from 0 to 9223372036854775807, got -1"),
        ({"guidance": float("nan")}, "Guidance: expected a number from 0 to 20"),
        ({"guidance": None}, "Guidance: expected a number from 0 to 20"),
        ({"scheduler": "fast"}, "Scheduler: expected one of 'as saved', ddim, ddpm, dpm++, euler, unipc; got 'fast'"),
    ],
)
def test_settings_are_checked_by_the_app_too(change, message):
    """What reaches `generate` without the page's components (a script calling it, a component that lets it pass)."""
    settings = {"prompt": PROMPT, "num_images": 2, "steps": 20, "guidance": 3.0, "seed": 0, "scheduler": "as saved", **change}
    with pytest.raises(ValueError, match=re.escape(message)):
        check_settings(**settings)


def test_a_folder_without_a_pipeline_is_named(client, tmp_path):
    with pytest.raises(AppError, match="is not a pipeline folder: it has no model_index.json"):
        client.predict(**api_args(str(tmp_path)))


def test_the_page_in_headless_chromium_shows_the_generated_images(server, tmp_path):
    """Type a prompt, click Generate, wait for the gallery: its <img> elements are the generated images, served and
    decoded at the page's size, with the captions and the summary under them; the screenshot is a real render."""
    browser = chromium_path()
    if browser is None:
        pytest.skip("headless Chromium not found (no `chromium` on PATH, HF_TEXTIMG_CHROMIUM unset): install Debian's "
                    "chromium (apt-get install chromium; .ci/run does) to run the browser test")
    pytest.importorskip("playwright", reason="playwright (the test extra) drives Chromium")
    page = generate_in_browser(server, "two blue squares", tmp_path / "app.png", browser, num_images=3)
    assert page["images"] == 3 and page["decoded_widths"] == [DISPLAY_SIDE] * 3
    assert all(caption.startswith("two blue squares · #") for caption in page["captions"])
    assert "3 images in" in page["summary"] and "Shapes scorer:" in page["summary"]
    shot = Image.open(tmp_path / "app.png")
    assert shot.width >= 1000 and len(np.unique(np.asarray(shot.convert("L")))) > 16  # a rendered page, not blank


def test_serve_without_gradio_says_how_to_install_it(monkeypatch, capsys):
    monkeypatch.delitem(sys.modules, "hf_textimg.app")  # imported afresh by `serve`...
    monkeypatch.setitem(sys.modules, "gradio", None)  # ...where `import gradio` fails as when it is not installed
    assert main(["serve"]) == 2
    assert "hf-textimg serve: error: the web app needs Gradio: pip install 'hf-textimg[app]'" in capsys.readouterr().err


def test_the_space_folder_runs_the_app_on_the_shipped_model(tmp_path):
    """spaces/build_space.py writes what a Space needs (app.py, README front matter, requirements, the package);
    its app.py, run as a Space runs it (python app.py, address and port from GRADIO_SERVER_*), serves the page,
    and the shipped Shapes model's images come back with the scorer's verdicts."""
    if "shapes-diffusion-32" not in model_choices():
        pytest.skip("the shipped shapes-diffusion-32 is not installed")
    space = tmp_path / "space"
    subprocess.run([sys.executable, str(REPO / "spaces" / "build_space.py"), str(space)], check=True, env=subprocess_env())
    front = (space / "README.md").read_text().split("---")[1]
    assert "sdk: gradio" in front and "app_file: app.py" in front and f"sdk_version: {gradio.__version__}" in front
    assert "diffusers" in (space / "requirements.txt").read_text()
    assert (space / "hf_textimg" / "pretrained" / "shapes-diffusion-32" / "model_index.json").is_file()
    port = free_port()
    env = subprocess_env(GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=port, GRADIO_ANALYTICS_ENABLED="False")
    env.pop("PYTHONPATH", None)  # the Space's own copy of the package, next to app.py
    process = subprocess.Popen([sys.executable, "app.py"], cwd=space, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        client = _connect(f"http://127.0.0.1:{port}/", process, tmp_path)
        gallery, summary = client.predict(**api_args("shapes-diffusion-32", num_images=2, steps=20, seed=0))
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0]
    assert len(gallery) == 2, output
    scorer = ShapesScorer()
    for item in gallery:
        verdict = scorer.score(Image.fromarray(shrink(item["image"], 32)), PROMPT)
        assert item["caption"].endswith("scorer: " + ", ".join(f"{'✓' if ok else '✗'} {c}" for c, ok in verdict.items()))
    assert "with `shapes-diffusion-32`: 20 steps" in summary and "Shapes scorer:" in summary
    assert str(space) in output  # the app ran from the Space folder's package (app.py prints where it loaded it from)


def _connect(url: str, process: subprocess.Popen, tmp_path, timeout: float = 120.0) -> Client:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise AssertionError(f"the Space's app.py exited ({process.returncode}):\n{process.stdout.read()}")
        try:
            return Client(url, verbose=False, download_files=str(tmp_path / "downloads"))
        except Exception:  # not listening yet  # noqa: BLE001
            if time.monotonic() > deadline:
                raise
            time.sleep(1)



def test_the_progress_bar_follows_the_denoising_steps(tiny_folder):
    calls = []

    def progress(value, desc=None, unit=None, **kwargs):
        calls.append((value, desc))

    generate(tiny_folder, PROMPT, "", 2, 3, 3.0, 0, "as saved", device="cpu", progress=progress)
    assert calls == [(0, "loading the model"), (0, "generating"), ((1, 3), "denoising"), ((2, 3), "denoising"), ((3, 3), "denoising")]


def test_a_one_shot_pipeline_says_what_does_not_apply(tmp_path):
    from hf_textimg.decoder import ConceptDecoder
    from hf_textimg.pipelines import DecoderPipeline

    base = tiny_base()
    decoder = ConceptDecoder(code_dim=32, noise_dim=4, block_out_channels=(16, 16, 8, 8), norm_num_groups=4).eval()
    DecoderPipeline(tokenizer=base.tokenizer, text_encoder=base.text_encoder, decoder=decoder).save_pretrained(tmp_path, safe_serialization=True)
    gallery, summary = generate(str(tmp_path), PROMPT, "two blue squares", 2, 20, 3.0, 0, "ddim", device="cpu")
    assert len(gallery) == 2
    assert "DecoderPipeline generates in one pass: steps, guidance and scheduler do not apply" in summary
    assert "DecoderPipeline takes no negative prompt: ignored" in summary


def test_the_model_box_offers_shipped_bases_and_their_cascades_not_stages_alone():
    """Every shipped base, and each base with its shipped 4x stage as a cascade; a stage alone (it needs an image to
    start from) is not offered, whichever form model_index.json names its class in (plain, or [code file, class])."""
    from hf_textimg.hub import detect_model_kind
    from hf_textimg.pretrained import SUPERRES_STAGES, available_models, pretrained_path

    shipped = available_models()
    stages = [name for name in shipped if detect_model_kind(pretrained_path(name)) == "superres"]
    bases = [name for name in shipped if name not in stages]
    cascades = [f"{base} + {SUPERRES_STAGES[base]}" for base in bases if SUPERRES_STAGES.get(base) in stages]
    assert stages and cascades, "expected shipped super-resolution stages and their bases"
    assert model_choices() == bases + cascades

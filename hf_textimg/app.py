"""The web app for hf-textimg models (Gradio): what `hf-textimg serve` runs and what a Space's app.py launches.

    pip install "hf-textimg[app]"
    hf-textimg serve                                   # http://127.0.0.1:7860
    hf-textimg serve --model outputs/diffusion-shapes --port 8080

One page: pick a model (a shipped one, or type a pipeline folder or Hub repo id), a prompt, a negative prompt,
the number of images, steps, guidance, seed and scheduler; it shows the images with their captions, the time
taken and, for Shapes captions, the Shapes scorer's verdict on each image (the rule-based reader `hf-textimg
evaluate` scores the benchmark with). Generation is the CLI's: the same seed gives the same images as
`hf-textimg generate` (one torch.Generator on the CPU, one pipeline call). Bad input is answered in the page
(`gr.Error`), not with a traceback. The same page is scripted over its API (`gradio_client`, api_name "/generate").
"""

from __future__ import annotations

import argparse
import functools
import inspect
import math
import time

import gradio as gr
from PIL import Image

from . import cli
from .pretrained import DEFAULT_MODEL, SUPERRES_STAGES, available_models, pretrained_path

MAX_IMAGES = 16  # per click: one pipeline call, a few seconds for the shipped 32 px model on a CPU
MAX_STEPS = 200
MAX_GUIDANCE = 20.0
DISPLAY_SIDE = 256  # images are enlarged (nearest neighbour, so pixels stay sharp) to at least this side for the page
AS_SAVED = "as saved"  # the scheduler choice that keeps the one the model was saved with
CASCADE_SUFFIX = " + "  # "shapes-diffusion-32 + shapes-superres-128": the shipped base with its 4x stage
EXAMPLES = (
    (DEFAULT_MODEL, "a red circle at the top left"),
    (DEFAULT_MODEL, "three blue squares"),
    (DEFAULT_MODEL, "a purple square left of an orange circle"),
    ("emoji-oneshot-32", "red heart, noto style"),
)
# System fonts: the default theme's Google Fonts would be fetched from the internet by every browser opening the page.
FONTS = {"font": ["ui-sans-serif", "system-ui", "sans-serif"], "font_mono": ["ui-monospace", "monospace"]}


# -- models ---------------------------------------------------------------------------------------


def model_choices() -> list[str]:
    """The shipped text-to-image models, and each shipped base with the shipped super-resolution stage (a cascade)
    when both are there. Super-resolution stages alone are left out: they need an image to start from."""
    from .hub import detect_model_kind  # reads model_index.json's class, either form ("<Class>" or ["<code file>", "<Class>"])

    stages, bases = [], []
    for name in available_models():
        (stages if detect_model_kind(pretrained_path(name)) == "superres" else bases).append(name)
    cascades = [f"{base}{CASCADE_SUFFIX}{SUPERRES_STAGES[base]}" for base in bases if SUPERRES_STAGES.get(base) in stages]
    return bases + cascades


def resolve_model(choice: str | None) -> tuple[str, tuple[str, ...]]:
    """A Model box value -> (pipeline folder or Hub id, super-resolution stage folders). ValueError names the box."""
    choice = (choice or "").strip()
    if not choice:
        raise ValueError("Model: choose a shipped model, or type a pipeline folder or a Hub repo id (org/name)")
    if choice in model_choices() and CASCADE_SUFFIX in choice:
        base, stage = choice.split(CASCADE_SUFFIX)
        return str(pretrained_path(base)), (str(pretrained_path(stage)),)
    try:
        return cli.model_arg(choice), ()
    except argparse.ArgumentTypeError as err:
        raise ValueError(f"Model: {err}") from None


@functools.lru_cache(maxsize=2)  # the last two (model, scheduler) pairs stay loaded: switching back is instant
def cached_pipeline(model: str, upscale: tuple[str, ...], scheduler: str | None, device: str):
    pipe = cli.load_pipeline(model, device, scheduler, list(upscale) or None)
    pipe.set_progress_bar_config(disable=True)  # the page shows progress (step_progress)
    return pipe


# -- checking the settings ------------------------------------------------------------------------


def whole_number(value, name: str, low: int, high: int | None = None) -> int:
    """A whole number from a page field (sliders and number boxes send floats) in [low, high], else a ValueError
    that names the field and the range."""
    allowed = f"from {low} to {high}" if high is not None else f"at least {low}"
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a whole number {allowed}, got {value!r}") from None
    if not math.isfinite(number) or number != int(number) or number < low or (high is not None and number > high):
        raise ValueError(f"{name}: expected a whole number {allowed}, got {value!r}")
    return int(number)


def check_settings(prompt, num_images, steps, guidance, seed, scheduler) -> dict:
    """The page's values, checked (each error names its field and what it takes)."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("Prompt: type a caption, e.g. 'a red circle at the top left'")
    try:
        guidance = float(guidance)
    except (TypeError, ValueError):
        raise ValueError(f"Guidance: expected a number from 0 to {MAX_GUIDANCE:g}, got {guidance!r}") from None
    if not 0 <= guidance <= MAX_GUIDANCE:  # also rejects nan
        raise ValueError(f"Guidance: expected a number from 0 to {MAX_GUIDANCE:g} (1 or less turns guidance off), got {guidance!r}")
    if scheduler not in (AS_SAVED, None, *cli.SCHEDULERS):
        raise ValueError(f"Scheduler: expected one of {AS_SAVED!r}, {', '.join(sorted(cli.SCHEDULERS))}; got {scheduler!r}")
    return {
        "num_images": whole_number(num_images, "Number of images", 1, MAX_IMAGES),
        "steps": whole_number(steps, "Steps", 1, MAX_STEPS),
        "guidance": guidance,
        "seed": whole_number(seed, "Seed", 0, 2**63 - 1),
        "scheduler": None if scheduler in (AS_SAVED, None) else scheduler,
    }


# -- generating -----------------------------------------------------------------------------------


def step_progress(progress, steps: int):
    """A diffusers `callback_on_step_end` that moves the page's progress bar one denoising step at a time."""

    def on_step(pipe, step: int, timestep, tensors: dict) -> dict:
        total = getattr(pipe, "_num_timesteps", None) or steps  # what the scheduler really runs
        progress((step + 1, total), desc="denoising", unit="steps")
        return tensors

    return on_step


def sampling_kwargs(pipe, settings: dict, negative_prompt: str, progress) -> tuple[dict, list[str]]:
    """The pipeline call's options this pipeline takes, and notes on the ones it does not."""
    accepted = inspect.signature(pipe.__call__).parameters
    kwargs = cli.call_kwargs(pipe, settings["steps"], settings["guidance"])
    notes = [] if "num_inference_steps" in kwargs else [f"{type(pipe).__name__} generates in one pass: steps, guidance and scheduler do not apply"]
    if negative_prompt.strip():
        if "negative_prompt" in accepted:
            kwargs["negative_prompt"] = negative_prompt
        else:
            notes.append(f"{type(pipe).__name__} takes no negative prompt: ignored")
    if "callback_on_step_end" in accepted:
        kwargs["callback_on_step_end"] = step_progress(progress, settings["steps"])
    return kwargs, notes


def shapes_verdicts(images: list, prompt: str) -> list[dict[str, bool]] | None:
    """The Shapes scorer's per-category verdicts for each image, or None when the prompt is not a Shapes caption
    (the scorer reads only what the Shapes world can ask for; docs/shapes-world.md)."""
    from .shapes import ShapesScorer, parse_prompt

    try:
        query = parse_prompt(prompt)
    except ValueError:
        return None
    scorer = ShapesScorer()
    return [scorer.score(image, query) for image in images]


def verdict_text(verdict: dict[str, bool]) -> str:
    return ", ".join(f"{'✓' if ok else '✗'} {category}" for category, ok in verdict.items())


def verdict_table(verdicts: list[dict[str, bool]]) -> str:
    """A Markdown table, one row per scored category and one column per image (the gallery's captions are cut short)."""
    rows = [["category", *(f"#{i + 1}" for i in range(len(verdicts)))], ["---"] * (len(verdicts) + 1)]
    rows += [[category, *("✓" if v[category] else "✗" for v in verdicts)] for category in verdicts[0]]
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def display(image: Image.Image) -> Image.Image:
    scale = max(1, math.ceil(DISPLAY_SIDE / image.width))
    return image.resize((image.width * scale, image.height * scale), Image.NEAREST) if scale > 1 else image


def summary(model: str, pipe, settings: dict, kwargs: dict, seconds: tuple[float, float], verdicts, notes: list[str]) -> str:
    """The Markdown under the gallery: how many images, how long, with what, and the scorer's tally."""
    load, make = seconds
    used = [f"seed {settings['seed']}"]
    if "num_inference_steps" in kwargs:
        used = [f"{kwargs['num_inference_steps']} steps", f"guidance {kwargs['guidance_scale']:g}", type(getattr(pipe, "scheduler", None)).__name__, *used]
    count = f"{settings['num_images']} image{'s' if settings['num_images'] > 1 else ''}"
    lines = [f"**{count} in {load + make:.1f} s** (loading {load:.1f} s, generating {make:.1f} s) "
             f"with `{model}`: {', '.join(used)}"]
    if verdicts is None:
        lines.append("Shapes scorer: no verdict (the prompt is not a Shapes-world caption)")
    else:
        hits = sum(all(v.values()) for v in verdicts)
        lines.append(f"Shapes scorer: **{hits} of {len(verdicts)}** images match every asked category ({', '.join(verdicts[0])})")
        lines.append(verdict_table(verdicts))
    return "\n\n".join(lines + [f"Note: {note}" for note in notes])


def generate(model, prompt, negative_prompt, num_images, steps, guidance, seed, scheduler, device: str = "auto",
             progress=None) -> tuple[list[tuple[Image.Image, str]], str]:
    """One click of Generate: (gallery of (image, caption), summary Markdown). ValueError for bad input."""
    progress = progress or (lambda *args, **kwargs: None)
    settings = check_settings(prompt, num_images, steps, guidance, seed, scheduler)
    start = time.perf_counter()
    progress(0, desc="loading the model")
    pipe = cached_pipeline(*resolve_model(model), settings["scheduler"], cli.resolve_device(device))
    loaded = time.perf_counter()
    kwargs, notes = sampling_kwargs(pipe, settings, str(negative_prompt or ""), progress)
    progress(0, desc="generating")  # pipelines without per-step callbacks (a cascade, the one-shot decoder) stay here
    images = cli.generate_images(pipe, [prompt], settings["num_images"], settings["seed"], **kwargs)
    generated = time.perf_counter()
    verdicts = shapes_verdicts(images, prompt)
    captions = [f"{prompt} · #{i + 1}" + (f" · scorer: {verdict_text(verdicts[i])}" if verdicts else "") for i in range(len(images))]
    text = summary(model.strip(), pipe, settings, kwargs, (loaded - start, generated - loaded), verdicts, notes)
    return [(display(image), caption) for image, caption in zip(images, captions)], text


# -- the page -------------------------------------------------------------------------------------


def build_demo(model: str | None = None, device: str = "auto") -> gr.Blocks:
    """The page. `model`: the Model box's first value (a shipped name, a folder or a Hub id; default the shipped
    Shapes model); `device`: where pipelines run (auto, cpu, cuda, cuda:N or mps)."""
    cli.resolve_device(device)  # e.g. cuda on a machine without one: an error at start
    choices = model_choices()
    if model is not None:
        resolve_model(model)  # a bad --model fails at start, not at the first click
        choices = [model] + [c for c in choices if c != model]

    def on_generate(model, prompt, negative_prompt, num_images, steps, guidance, seed, scheduler, progress=gr.Progress()):
        try:
            return generate(model, prompt, negative_prompt, num_images, steps, guidance, seed, scheduler, device, progress)
        except (ValueError, FileNotFoundError) as err:  # bad input: one line in the page, no traceback
            raise gr.Error(str(err), print_exception=False) from None

    with gr.Blocks(title="hf-textimg", analytics_enabled=False) as demo:
        gr.Markdown("# hf-textimg\nSmall text-to-image models trained from scratch (diffusers pipelines). "
                    "The shipped Shapes model knows 8 colours, 4 shapes, positions, counts, pairs and relations.")
        with gr.Row():
            with gr.Column(scale=2):
                inputs = _input_fields(choices, model or DEFAULT_MODEL)
                button = gr.Button("Generate", variant="primary", elem_id="generate")
                shipped = set(available_models())
                gr.Examples([list(e) for e in EXAMPLES if e[0] in shipped], inputs=inputs[:2], label="Examples")
            with gr.Column(scale=3):
                gallery = gr.Gallery(label="Images", columns=4, height="auto", format="png", object_fit="contain", elem_id="gallery")
                report = gr.Markdown(elem_id="summary")
        button.click(on_generate, inputs, [gallery, report], api_name="generate")
        inputs[1].submit(on_generate, inputs, [gallery, report], api_name=False)  # Enter in the prompt box
    return demo


def _input_fields(choices: list[str], model: str) -> list:
    """The Generate button's inputs, in `generate`'s argument order."""
    model_box = gr.Dropdown(choices, value=model, allow_custom_value=True, label="Model",
                            info="a shipped model, or type a pipeline folder or a Hub repo id (org/name)")
    prompt = gr.Textbox(label="Prompt", value=EXAMPLES[0][1], elem_id="prompt")
    negative = gr.Textbox(label="Negative prompt", placeholder="optional: what to steer away from")
    with gr.Row():
        num_images = gr.Slider(1, MAX_IMAGES, value=4, step=1, label="Number of images")
        seed = gr.Number(0, precision=0, minimum=0, label="Seed")
    with gr.Row():
        steps = gr.Slider(1, MAX_STEPS, value=cli.DEFAULT_STEPS, step=1, label="Steps")
        guidance = gr.Slider(0, MAX_GUIDANCE, value=cli.DEFAULT_GUIDANCE, step=0.5, label="Guidance", info="1 or less: off")
    scheduler = gr.Dropdown([AS_SAVED, *sorted(cli.SCHEDULERS)], value=AS_SAVED, label="Scheduler",
                            info="ddpm needs ~1000 steps, the others ~20-50")
    return [model_box, prompt, negative, num_images, steps, guidance, seed, scheduler]


def launch(demo: gr.Blocks, host: str | None = None, port: int | None = None, **kwargs):
    """`demo.launch` with one generation at a time (a CPU runs one well) and the page's theme. host/port None:
    Gradio's defaults and environment (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT, which a Space sets)."""
    theme = gr.themes.Default(**FONTS)
    return demo.queue(default_concurrency_limit=1).launch(server_name=host, server_port=port, theme=theme, **kwargs)


def serve(host: str = "127.0.0.1", port: int = 7860, model: str | None = None, device: str = "auto") -> None:
    """`hf-textimg serve`: build the page and serve it until interrupted."""
    launch(build_demo(model, device), host, port)


__all__ = ["build_demo", "generate", "launch", "model_choices", "resolve_model", "serve"]

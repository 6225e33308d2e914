"""Share trained models on the Hugging Face Hub: model cards and pushes.

Every training script ends with `write_card_and_push(cfg, argv, script)`: it renders the
model card (README.md) from the templates in `model_cards/` and, with `--push_to_hub`,
uploads the output folder. `train_loop` calls `push_checkpoint` after each checkpoint.

    card = render_model_card("outputs/diffusion-shapes", model_id="me/diffusion-shapes")
    push_to_hub("outputs/diffusion-shapes", "me/diffusion-shapes", private=True)

What is uploaded: safetensors weights, JSON configs, tokenizer files, the custom-code `.py`
files that `trust_remote_code` loads, the card and PNG sample grids. Never pickles, never
`checkpoint-*/` folders or tracker logs; a resumable checkpoint goes up as `last-checkpoint/`.
Only the main process pushes.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
from pathlib import Path

logger = logging.getLogger(__name__)

TEMPLATES_DIR = Path(__file__).resolve().parent / "model_cards"  # a link to the top-level model_cards/ in the repository; package data in a wheel
CARD_TEMPLATES = {
    "diffusion": "diffusion_card_template.md",
    "decoder": "decoder_card_template.md",
    "concept": "concept_card_template.md",
    "autoencoder": "autoencoder_card_template.md",
    "superres": "superres_card_template.md",
    "cascade": "cascade_card_template.md",
    "prior": "prior_card_template.md",
    "unclip": "unclip_card_template.md",
}
PIPELINE_KINDS = {
    "ConceptDiffusionPipeline": "diffusion", "DecoderPipeline": "decoder",
    "ConceptSuperResolutionPipeline": "superres", "ConceptCascadePipeline": "cascade",
    "ConceptPriorPipeline": "prior", "ConceptUnCLIPPipeline": "unclip",
}
TEXT_TO_IMAGE_KINDS = ("diffusion", "decoder", "cascade", "unclip")
SECTIONS_TEMPLATE = "card_sections.md"  # Jinja macros shared by every card (training, data licences, ...)

ALLOW_PATTERNS = ["*.safetensors", "*.json", "*.txt", "*.md", "*.png", "*.py"]
IGNORE_PATTERNS = ["checkpoint-*", ".tmp-checkpoint-*", "logs", "*.bin", "*.pkl", "*.pt", "*.pth", "*.ckpt", ".*"]

# Built-in data sets: the id used in card metadata, and what the card says about them.
BUILTIN_DATASET_IDS = {"shapes": "hf-textimg/shapes-world", "emoji": "hf-textimg/emoji-noto"}
SHAPES_CATEGORIES = ("single", "color", "position", "count", "pair", "relation", "heldout", "overall", "exact")  # rows of a card's Shapes table


# ---- what is in an output folder ---------------------------------------------------------
def detect_model_kind(output_dir: str | os.PathLike) -> str:
    """"diffusion" / "decoder" / "superres" / "cascade" / "prior" / "unclip" (pipeline folders), "concept" (transformers) or "autoencoder" (diffusers model)."""
    folder = Path(output_dir)
    if (folder / "model_index.json").is_file():
        class_name = json.loads((folder / "model_index.json").read_text())["_class_name"]
        class_name = class_name[-1] if isinstance(class_name, list) else class_name  # ["<code file>", "<Class>"]
        return PIPELINE_KINDS.get(class_name) or _unknown(folder, class_name)
    if (folder / "config.json").is_file():
        config = json.loads((folder / "config.json").read_text())
        if str(config.get("model_type", "")).startswith("concept"):
            return "concept"
        if config.get("_class_name") == "ConceptAutoencoder":
            return "autoencoder"
        return _unknown(folder, config.get("_class_name") or config.get("model_type"))
    raise ValueError(f"{folder} holds no model_index.json or config.json: is it a training output folder?")


def _unknown(folder: Path, name) -> str:
    raise ValueError(f"{folder} holds a {name!r} model; model cards cover {', '.join(CARD_TEMPLATES)}.")


def count_parameters(folder: str | os.PathLike) -> int:
    """Parameters stored in a folder's safetensors files, read from their headers (no weights are loaded)."""
    from safetensors import safe_open

    total = 0
    for path in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(path, framework="pt") as f:
            for name in f.keys():
                shape = f.get_slice(name).get_shape()
                numel = 1
                for dim in shape:
                    numel *= dim
                total += numel
    return total


def _components(folder: Path, kind: str) -> list[dict]:
    if kind in PIPELINE_KINDS.values():
        index = json.loads((folder / "model_index.json").read_text())
        return [
            {"name": name, "cls": spec[1], "params": count_parameters(folder / name)}
            for name, spec in index.items()
            # components are [library, class]; a list setting (a cascade's upscale_factors) or an absent optional one is not
            if not name.startswith("_") and isinstance(spec, list) and len(spec) == 2 and isinstance(spec[0], str)
        ]
    config = json.loads((folder / "config.json").read_text())
    cls = (config.get("architectures") or [config.get("_class_name")])[0]
    return [{"name": ".", "cls": cls, "params": count_parameters(folder)}]


SAMPLES_FILE = "samples.png"  # a sample grid made after training (`hf-textimg generate ... --out <folder>/samples.png`)


def _latest_grid(folder: Path) -> str | None:
    """The card's sample grid: the last validation grid the training run saved, else `samples.png`."""
    grids = sorted((folder / "validation").glob("step-*.png"), key=lambda p: int(p.stem.split("-")[1]) if p.stem.split("-")[1].isdigit() else -1)
    if grids:
        return grids[-1].relative_to(folder).as_posix()
    return SAMPLES_FILE if (folder / SAMPLES_FILE).is_file() else None


def _dataset_info(config: dict) -> dict:
    """What the card says about the training data: its kind ("shapes", "emoji", "other"), metadata id and,
    for the Emoji set, the artwork styles used with their packages, licences and attributions."""
    name, data_dir = config.get("dataset_name"), config.get("train_data_dir")
    if data_dir is None and name == "emoji":
        return {"kind": name, "name": name, **_emoji_styles_info(config.get("emoji_styles") or ["noto"])}
    if data_dir is None and name in BUILTIN_DATASET_IDS:
        return {"kind": name, "id": BUILTIN_DATASET_IDS[name], "name": name}
    source = data_dir or name
    # A Hub dataset id can go in the metadata; a local folder cannot.
    hub_id = name if data_dir is None and name and "/" in name and not Path(name).exists() else None
    return {"kind": "other", "id": hub_id, "name": source}


def _emoji_styles_info(styles: list[str]) -> dict:
    from .data.emoji_sources import STYLE_SOURCES

    used = [STYLE_SOURCES[s] for s in STYLE_SOURCES if s in styles]  # the package's style order
    dataset_id = BUILTIN_DATASET_IDS["emoji"] if styles == ["noto"] else "hf-textimg/emoji-" + "-".join(s.style for s in used)
    return {"id": dataset_id, "styles": [
        {"style": s.style, "title": s.title, "package": s.package if s.version is None else s.npm_spec, "debian": s.version is None,
         "licence": s.licence, "licence_name": s.licence_name, "attribution": s.attribution, "homepage": s.homepage}
        for s in used
    ]}


def _training_command(script: str | None, argv: list[str] | None) -> str | None:
    if script is None or argv is None:
        return None
    redacted, hide = [], False
    for arg in argv:  # the token must never reach the card
        redacted.append("<hidden>" if hide else arg)
        hide = arg in ("--hub_token", "--hub-token")
        if arg.startswith(("--hub_token=", "--hub-token=")):
            redacted[-1] = arg.split("=", 1)[0] + "=<hidden>"
    return shlex.join(["python", f"training/{Path(script).name}", *redacted])


def _canonical_layouts(config: dict) -> list[str]:
    """Shapes scene kinds trained in the canonical layout: `shapes_canonical_layouts`, or, in a config saved before
    that flag, the kinds whose `shapes_<kind>_layout` was "canonical"."""
    if "shapes_canonical_layouts" in config:
        return list(config["shapes_canonical_layouts"] or [])
    return [kind for kind in ("single", "count", "pair", "relation") if config.get(f"shapes_{kind}_layout") == "canonical"]


# ---- evaluation as card metadata ------------------------------------------------------------
def _metric_label(key: str) -> str:
    return key.removeprefix("shapes_").replace("_", " ")


def _metric_type(key: str) -> str:
    """Shapes scores are accuracies (exactness is one too: a share of images), except variety: a ratio of distinct
    layouts to the data's (hf_textimg.shapes.variety)."""
    if key.startswith("shapes_variety"):
        return "variety_ratio"
    if key.startswith("shapes_") or "accuracy" in key:
        return "accuracy"
    return "recall" if "recall" in key else key


def _eval_results(kind: str, metrics: dict, dataset: dict) -> list:
    from huggingface_hub import EvalResult

    task = "text-to-image" if kind in TEXT_TO_IMAGE_KINDS else {"concept": "zero-shot-image-classification"}.get(kind, "image-to-image")
    dataset_id = dataset["id"] or "custom"
    results = []
    for key, value in metrics.items():
        if key.endswith("_seconds") or not isinstance(value, (int, float)):
            continue
        is_shapes = key.startswith("shapes_")
        results.append(
            EvalResult(
                task_type=task,
                dataset_type="hf-textimg/shapes-benchmark" if is_shapes else dataset_id,
                dataset_name="Shapes benchmark (prompts never seen in training)" if is_shapes else f"{dataset['name']} validation",
                dataset_split="heldout" if "heldout" in key else ("benchmark" if is_shapes else "validation"),
                metric_type=_metric_type(key),
                metric_name=_metric_label(key),
                metric_value=round(float(value), 4),
            )
        )
    return results


# ---- the card -------------------------------------------------------------------------------
def _example_prompts(kind: str, config: dict, dataset: dict) -> list[str]:
    if config.get("validation_prompts"):
        return list(config["validation_prompts"])[:2]
    if dataset["kind"] == "emoji":
        style = dataset["styles"][0]["style"] if dataset.get("styles") else "noto"
        return [f"red apple, {style} style", f"smiling face with sunglasses, {style} style"]
    if kind == "concept":
        return ["a red circle", "a blue square"]
    return ["a red circle at the top left", "two blue squares"]


def render_model_card(
    output_dir: str | os.PathLike,
    model_id: str | None = None,
    command: str | None = None,
    hub_checkpoint: bool = False,
):
    """The `huggingface_hub.ModelCard` of a training output folder.

    `model_id` is what the usage snippet loads (a Hub repo id, or by default the folder
    itself); `command` is the exact training command; `hub_checkpoint` says the repo holds a
    ``last-checkpoint/``. Metrics, history and config come from ``eval_results.json``
    (written by `write_eval_results`) when it exists.
    """
    from huggingface_hub import ModelCard, ModelCardData

    folder = Path(output_dir)
    kind = detect_model_kind(folder)
    results_file = folder / "eval_results.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    config = results.get("config", {})
    metrics = {k: v for k, v in results.get("metrics", {}).items() if isinstance(v, (int, float))}
    recorded = results.get("evaluate", {})
    dataset = _dataset_info(config) if config else {"kind": "other", "id": None, "name": "unknown"}
    model_id = model_id or folder.as_posix()
    title = model_id.rstrip("/").split("/")[-1]

    history = []
    for step, minutes, step_metrics in results.get("metrics_history", []):
        history.append({"step": step, "minutes": "-" if minutes is None else round(minutes, 1), "metrics": step_metrics})
    shapes_categories = [c for c in SHAPES_CATEGORIES if f"shapes_{c}" in metrics]
    eval_results = _eval_results(kind, _headline_metrics(results), dataset)
    tags = ["hf-textimg", "text-to-image" if kind in TEXT_TO_IMAGE_KINDS else kind, "safetensors"]
    tags += {"diffusion": ["diffusion", "pixel-space"], "decoder": ["one-shot"], "concept": ["clip", "custom_code"],
             "superres": ["image-to-image", "super-resolution", "diffusion", "pixel-space"],
             "cascade": ["cascade", "super-resolution", "diffusion", "pixel-space"], "prior": ["unclip", "prior"],
             "unclip": ["unclip", "prior", "one-shot"]}.get(kind, [])
    if dataset["kind"] != "other":
        tags.append(f"{dataset['kind']}-dataset")
    card_data = ModelCardData(
        license="apache-2.0",
        library_name="transformers" if kind == "concept" else "diffusers",
        pipeline_tag="text-to-image" if kind in TEXT_TO_IMAGE_KINDS else {"concept": "zero-shot-image-classification", "superres": "image-to-image"}.get(kind),
        tags=tags,
        datasets=[dataset["id"]] if dataset["id"] else None,
        model_name=title,
        eval_results=eval_results or None,
    )

    template = (TEMPLATES_DIR / SECTIONS_TEMPLATE).read_text() + (TEMPLATES_DIR / CARD_TEMPLATES[kind]).read_text()
    model_config = json.loads((folder / "config.json").read_text()) if (folder / "config.json").is_file() else {}
    text_config_file = folder / "text_encoder" / "config.json"
    text_encoder_config = json.loads(text_config_file.read_text()) if text_config_file.is_file() else {}
    index_file = folder / "model_index.json"
    pipeline_config = json.loads(index_file.read_text()) if index_file.is_file() else {}
    components = _components(folder, kind)
    return ModelCard.from_template(
        card_data,
        template_str=template,
        kind=kind,
        title=title,
        model_id=model_id,
        components=components,
        total_params=sum(c["params"] for c in components),
        model_config=model_config,
        text_encoder_config=text_encoder_config,
        pipeline_config=pipeline_config,
        config=config,
        canonical_layouts=_canonical_layouts(config),
        config_json=json.dumps(config, indent=2) if config else None,
        command=command,
        global_step=results.get("global_step"),
        train_minutes=round(results["train_minutes"], 1) if "train_minutes" in results else None,
        metrics={k: round(v, 4) for k, v in metrics.items() if not k.endswith("_seconds")},
        history=history,
        shapes_categories=shapes_categories,
        dataset=dataset,
        sample_grid=_latest_grid(folder),
        hub_checkpoint=hub_checkpoint,
        example_prompts=json.dumps(_example_prompts(kind, config, dataset)),
        evaluate_block=evaluate_block(recorded) if recorded else "",
        compute=results.get("compute"),  # where it trained, when not this machine's CPU (written by hand when shipping)
        notes=results.get("notes", []),  # limitations of this model in particular (written by hand when shipping)
        example_prompt=_example_prompts(kind, config, dataset)[0],
    )


def save_model_card(output_dir: str | os.PathLike, **kwargs) -> Path:
    """Write the card (`render_model_card(output_dir, **kwargs)`) to ``output_dir/README.md``; return its path."""
    path = Path(output_dir) / "README.md"
    render_model_card(output_dir, **kwargs).save(path)
    return path


# ---- evaluations recorded by `hf-textimg evaluate --record` ------------------------------------
# The block of a card that shows them, between these markers so a later record replaces it in place.
EVALUATE_BEGIN, EVALUATE_END = "<!-- hf-textimg evaluate: begin -->", "<!-- hf-textimg evaluate: end -->"


def evaluate_block(recorded: dict) -> str:
    """Markdown for the evaluations recorded in eval_results.json["evaluate"]: each one's command and table."""
    lines = [EVALUATE_BEGIN, "Measured by the package's own evaluation; each command reproduces its table:", ""]
    for entry in recorded.values():
        lines += [f"`{entry['command']}` ({entry['what']}):", "", "```text", entry["table"].rstrip("\n"), "```", ""]
    return "\n".join(lines + [EVALUATE_END])


def _headline_metrics(results: dict) -> dict:
    """The metrics a card's model-index reports: those of recorded `hf-textimg evaluate` runs (benchmark prompt sets)
    when there are any, else the last in-run evaluation."""
    recorded = {k: v for entry in results.get("evaluate", {}).values() if entry.get("prompt_set") == "benchmark"
                for k, v in entry["metrics"].items()}
    metrics = recorded or results.get("metrics", {})
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float))}


def record_evaluation(output_dir: str | os.PathLike, key: str, entry: dict) -> Path:
    """Store one `hf-textimg evaluate` result (`entry`: command, what, table, metrics, prompt_set) as
    ``eval_results.json["evaluate"][key]`` of a model folder and show every recorded one in its card
    (README.md, between EVALUATE_BEGIN/END: the rest of the card is kept as it is; its model-index then reports the
    recorded benchmark figures). Returns the card's path."""
    from huggingface_hub import ModelCard

    folder = Path(output_dir)
    results_file = folder / "eval_results.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    results.setdefault("evaluate", {})[key] = entry
    results_file.write_text(json.dumps(results, indent=2, default=str) + "\n")
    card_path = folder / "README.md"
    card = ModelCard.load(card_path) if card_path.is_file() else render_model_card(folder)
    block, text = evaluate_block(results["evaluate"]), card.text
    if EVALUATE_BEGIN in text and EVALUATE_END in text:
        text = text[: text.index(EVALUATE_BEGIN)] + block + text[text.index(EVALUATE_END) + len(EVALUATE_END) :]
    elif "## Evaluation\n" in text:
        head, tail = text.split("## Evaluation\n", 1)
        text = f"{head}## Evaluation\n\n{block}\n\nDuring training:\n{tail}"
    else:
        text = f"{text.rstrip()}\n\n## Evaluation\n\n{block}\n"
    card.text = text
    config = results.get("config", {})
    dataset = _dataset_info(config) if config else {"kind": "other", "id": None, "name": "unknown"}
    card.data.eval_results = _eval_results(detect_model_kind(folder), _headline_metrics(results), dataset) or None
    if card.data.eval_results and not card.data.model_name:
        card.data.model_name = folder.resolve().name  # a model-index needs a name
    card.save(card_path)
    return card_path


# ---- pushing --------------------------------------------------------------------------------
def _is_main_process() -> bool:
    from accelerate import PartialState

    return PartialState().is_main_process


def create_hub_repo(repo_id: str, token: str | None = None, private: bool | None = None) -> str:
    """Create the repo if needed and return its full id (``namespace/name``; a bare name goes under the token's user)."""
    from huggingface_hub import create_repo

    return create_repo(repo_id, token=token, private=private, exist_ok=True).repo_id


def _files_to_push(folder: Path, path_in_repo: str = "") -> list[tuple[Path, str]]:
    from huggingface_hub.utils import filter_repo_objects

    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    # A pattern like "checkpoint-*" must also drop everything below such a folder.
    ignore = IGNORE_PATTERNS + [f"{p}/**" for p in IGNORE_PATTERNS] + [f"**/{p}" for p in IGNORE_PATTERNS]
    kept = filter_repo_objects(files, allow_patterns=ALLOW_PATTERNS + [f"**/{p}" for p in ALLOW_PATTERNS], ignore_patterns=ignore)
    prefix = f"{path_in_repo}/" if path_in_repo else ""
    return [(folder / rel, prefix + rel) for rel in kept]


def push_to_hub(
    output_dir: str | os.PathLike,
    repo_id: str,
    token: str | None = None,
    private: bool | None = None,
    commit_message: str = "Upload model trained with hf-textimg",
    checkpoint_dir: str | os.PathLike | None = None,
) -> str | None:
    """Upload `output_dir` (weights, configs, tokenizer, card, grids; see module docstring) as one commit.

    `checkpoint_dir` (a ``checkpoint-<step>`` folder) goes up as ``last-checkpoint/`` in the same commit.
    Returns the commit URL; on any process but the main one, does nothing and returns None.
    """
    if not _is_main_process():
        return None
    from huggingface_hub import CommitOperationAdd, HfApi

    repo_id = create_hub_repo(repo_id, token=token, private=private)
    files = _files_to_push(Path(output_dir))
    if checkpoint_dir is not None:
        files += _files_to_push(Path(checkpoint_dir), "last-checkpoint")
    if not files:
        raise ValueError(f"Nothing to push in {output_dir}: no safetensors, JSON, tokenizer, card or PNG files.")
    operations = [CommitOperationAdd(path_in_repo=in_repo, path_or_fileobj=str(local)) for local, in_repo in files]
    commit = HfApi(token=token).create_commit(repo_id, operations, commit_message=commit_message)
    logger.info("Pushed %d files of %s to %s", len(files), output_dir, commit.commit_url)
    return commit.commit_url


def hub_repo_id(cfg) -> str:
    """`--hub_model_id`, else the output folder's name (as diffusers' training examples do)."""
    return cfg.hub_model_id or Path(cfg.output_dir).resolve().name


def push_checkpoint(cfg, checkpoint_dir: str | os.PathLike, step: int) -> str | None:
    """With `--push_to_hub`: push the output folder so far plus this checkpoint as ``last-checkpoint/``."""
    if not cfg.push_to_hub:
        return None
    return push_to_hub(
        cfg.output_dir, hub_repo_id(cfg), token=cfg.hub_token, private=cfg.hub_private_repo or None,
        commit_message=f"Training in progress, step {step}", checkpoint_dir=checkpoint_dir,
    )


def write_card_and_push(cfg, argv: list[str] | None, script: str) -> Path | None:
    """End of a training run (main process): write README.md, and with `--push_to_hub` upload the folder.

    The card's usage snippet loads the Hub repo when pushing, else the local folder. `argv`
    is the script's arguments (None: `sys.argv[1:]`), recorded as the exact training command.
    """
    import sys

    if not _is_main_process():
        return None
    argv = sys.argv[1:] if argv is None else list(argv)
    model_id = create_hub_repo(hub_repo_id(cfg), token=cfg.hub_token, private=cfg.hub_private_repo or None) if cfg.push_to_hub else None
    pushed_checkpoints = cfg.push_to_hub and any(Path(cfg.output_dir).glob("checkpoint-*"))
    card = save_model_card(cfg.output_dir, model_id=model_id, command=_training_command(script, argv), hub_checkpoint=pushed_checkpoints)
    if cfg.push_to_hub:
        url = push_to_hub(cfg.output_dir, model_id, token=cfg.hub_token, commit_message="End of training")
        print(f"Pushed to {url}")
    return card

"""Checks a saved model folder before `from_pretrained` reads it, so a wrong folder gets a clear error.

`from_pretrained` on its own gives confusing answers for common mistakes: a folder without `config.json` loads
transformers' default config and then fails on tensor sizes; a config of another model type loads with only a
warning; a truncated `.safetensors` file raises "incomplete metadata"; and a pickle-only folder
(`pytorch_model.bin`) is unpickled. `check_pretrained_folder` turns each of these into an error naming the file and
the fix, and refuses pickle files outright: this package reads weights from safetensors only.

`SafeLoadingMixin` gives a diffusers model (`ModelMixin`) a `from_pretrained` that runs these checks first; the
concept models (transformers) run them in their own `from_pretrained`.

This file must import nothing from `hf_textimg`: `hf_textimg/concept/safe_loading.py` is a link to it, which the
concept model's code imports relatively, so `save_pretrained` copies it beside the weights for
`trust_remote_code` loading without the package.
"""

import json
import os

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def check_pretrained_folder(path, class_name: str, config_key: str, allowed: tuple, subfolder: str = "") -> None:
    """Raise a clear error unless `path` (joined with `subfolder`) is a saved folder of an allowed model.

    Args:
        path: what was given to `from_pretrained`; anything but a local folder (a Hub id, None) is left to
            `from_pretrained` itself.
        class_name: the class being loaded, for the messages.
        config_key: the `config.json` key naming the model: "model_type" (transformers) or "_class_name" (diffusers).
        allowed: the values of that key this class loads.

    Raises:
        OSError: no `config.json`, or no weights at all.
        ValueError: a config for another model, pickle-only weights, or a truncated / corrupt safetensors file.
    """
    if path is None or not os.path.isdir(os.path.join(str(path), subfolder or "")):
        return
    folder = os.path.normpath(os.path.join(str(path), subfolder or ""))
    config_file = os.path.join(folder, "config.json")
    if not os.path.isfile(config_file):
        raise OSError(
            f"{folder} has no config.json, so it is not a saved {class_name}; pass the folder that "
            f"`{class_name}.save_pretrained` wrote (it holds config.json and the .safetensors weights)."
        )
    try:
        with open(config_file) as f:
            config = json.load(f)
    except (OSError, ValueError) as error:
        raise ValueError(f"{config_file} is not valid JSON ({error}); re-save the model with save_pretrained.") from error
    found = config.get(config_key) if isinstance(config, dict) else None
    if found not in allowed:
        described = f"describes a {found!r} model ({config_key})" if found else f"has no {config_key!r}: it is another kind of model"
        raise ValueError(
            f"{config_file} {described}, but {class_name} loads {', '.join(map(repr, allowed))}; "
            "pass a folder saved from that model, or load this one with its own class (e.g. AutoModel / DiffusionPipeline)."
        )

    names = os.listdir(folder)
    weights = sorted(n for n in names if n.endswith(".safetensors"))
    if not weights:
        pickles = sorted(n for n in names if n.endswith(PICKLE_SUFFIXES))
        if pickles:
            raise ValueError(
                f"{folder} holds only pickle weights ({', '.join(pickles)}); {class_name} reads safetensors only, since "
                "unpickling can run arbitrary code. If you trust the file, convert it once: "
                "`model.save_pretrained(folder)` after loading it yourself, or "
                "`safetensors.torch.save_file(torch.load(file, weights_only=True), path)` with the .safetensors name "
                "that save_pretrained uses."
            )
        raise OSError(f"{folder} has no .safetensors weights; pass the folder that `{class_name}.save_pretrained` wrote.")
    for name in weights:
        check_safetensors_file(os.path.join(folder, name))


def check_safetensors_file(file: str) -> None:
    """Raise a ValueError naming `file` if its header is unreadable or it is shorter than the header says."""
    from safetensors import safe_open

    try:
        with safe_open(file, framework="pt"):
            pass
    except Exception as error:  # safetensors raises SafetensorError (header) or OSError (read)
        raise ValueError(
            f"{file} is truncated or corrupt ({error}); it was probably cut short by an interrupted download or save. "
            "Download or save it again."
        ) from error


class SafeLoadingMixin:
    """`from_pretrained` after checking a local folder (`check_pretrained_folder`): its config must be this class's
    (`_class_name`) and its weights complete safetensors; pickle weights are refused, never unpickled. For diffusers
    models: put it before `ModelMixin` in the bases."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        check_pretrained_folder(pretrained_model_name_or_path, cls.__name__, "_class_name", (cls.__name__,), kwargs.get("subfolder") or "")
        kwargs.setdefault("use_safetensors", True)
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)


def describe_size_mismatch(path, subfolder: str, model_class, config) -> str:
    """Why the weights of a local folder do not fit the model its config.json builds: the first mismatched tensors,
    with the shape saved and the shape the config asks for (e.g. a hidden_size edited after saving)."""
    import torch
    from safetensors import safe_open

    folder = os.path.normpath(os.path.join(str(path), subfolder or ""))
    saved = {}
    for name in sorted(n for n in os.listdir(folder) if n.endswith(".safetensors")):
        with safe_open(os.path.join(folder, name), framework="pt") as f:
            saved.update({key: (name, tuple(f.get_slice(key).get_shape())) for key in f.keys()})
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        expected = {key: tuple(t.shape) for key, t in model_class(config).state_dict().items()}
    mismatches = []
    for key, (file, shape) in saved.items():
        own = next((k for k in expected if key == k or key.endswith("." + k)), None)
        if own is not None and expected[own] != shape:
            mismatches.append(f"{key} is {list(shape)} in {file} but {list(expected[own])} by the config")
    shown = "; ".join(mismatches[:3]) + (f"; and {len(mismatches) - 3} more" if len(mismatches) > 3 else "")
    return (
        f"{os.path.join(folder, 'config.json')} does not match the weights saved beside it ({shown or 'tensor sizes differ'}). "
        "The config was edited or comes from another model (e.g. hidden_size); restore the config.json saved with these "
        "weights, or save the model again."
    )

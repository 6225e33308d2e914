"""Write a folder that is a ready Hugging Face Space (sdk: gradio) running the web app (hf_textimg/app.py).

    python spaces/build_space.py build/space        # or: make space
    hf upload --repo-type space ORG/NAME build/space .

The folder holds spaces/hf-textimg/app.py, its README.md (the Space's front matter, sdk_version set to the Gradio
installed here, the one the app was tested with), a requirements.txt of the package's own dependencies (read from
pyproject.toml; the Space installs Gradio itself from sdk_version) and a copy of the hf_textimg package with its
shipped models, which `python app.py` imports from the folder it runs in.
"""

from __future__ import annotations

import argparse
import shutil
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "spaces" / "hf-textimg"
# The free Space hardware is a CPU: torch's CPU wheels are a fraction of the default CUDA build's size.
TORCH_INDEX = "--extra-index-url https://download.pytorch.org/whl/cpu"


def requirements() -> str:
    """pyproject.toml's dependencies, one a line (what `pip install hf-textimg` would install)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    lines = [f"# {project['name']} {project['version']}'s dependencies (pyproject.toml); Gradio comes from sdk_version", TORCH_INDEX]
    return "\n".join(lines + list(project["dependencies"])) + "\n"


def build_space(out: Path) -> Path:
    """Write the Space folder `out` (which must not exist or be empty) and return it."""
    import gradio
    from huggingface_hub import SpaceCard

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} is not empty: pass a new folder")
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy2(TEMPLATE / "app.py", out / "app.py")
    card = SpaceCard.load(TEMPLATE / "README.md")
    card.data.sdk_version = gradio.__version__
    card.save(out / "README.md")
    (out / "requirements.txt").write_text(requirements())
    # symlinks=False: the hf_textimg/model_cards link is copied as the folder it points to
    shutil.copytree(REPO / "hf_textimg", out / "hf_textimg", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the folder to write (new or empty)")
    out = build_space(parser.parse_args(argv).out)
    print(f"Wrote the Space folder {out}; push it with: hf upload --repo-type space ORG/NAME {out} .")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Every training script runs the way the README runs it, `python training/<script>.py`, from the repository root: its
imports of sibling scripts (`from training.train_diffusion import ...`) must work without `training` being installed."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p.name for p in (ROOT / "training").glob("train_*.py"))


def test_every_training_script_starts_as_a_script():
    assert {"train_diffusion.py", "train_distill.py", "train_prior.py"} <= set(SCRIPTS)
    # all at once: each start is mostly importing torch and diffusers
    runs = {name: subprocess.Popen([sys.executable, f"training/{name}", "--help"], cwd=ROOT, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True) for name in SCRIPTS}
    for name, run in runs.items():
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, f"python training/{name} --help failed:\n{err[-2000:]}"
        assert "--output_dir" in out, name

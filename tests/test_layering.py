"""The general layers do not import the Shapes world (issue 18): in a fresh interpreter, importing them loads no
`hf_textimg.shapes` module. A prompt normalization that belongs to Shapes is looked up by name and imported only
when a prompt is rewritten."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GENERAL_LAYERS = ["hf_textimg", "hf_textimg.pipelines", "hf_textimg.training", "hf_textimg.concept", "hf_textimg.diffusion",
                  "hf_textimg.decoder", "hf_textimg.prior", "hf_textimg.autoencoder", "hf_textimg.data.loading", "hf_textimg.hub", "hf_textimg.utils"]
SCRIPT = f"""
import json, sys
shapes_modules = lambda: sorted(m for m in sys.modules if m.startswith("hf_textimg.shapes"))
import {", ".join(GENERAL_LAYERS)}
from hf_textimg.data.prompts import check_prompt_normalization, normalize_prompts
check_prompt_normalization("shapes_relations")  # what a pipeline does on construction
after_imports = shapes_modules()
rewritten = normalize_prompts(["a blue square right of a red circle"], "shapes_relations")
print(json.dumps([after_imports, rewritten, shapes_modules()]))
"""


def test_general_layers_do_not_import_shapes():
    # One interpreter for every layer: starting one costs seconds; a failure lists the Shapes modules that were loaded.
    env = {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, check=True, env=env)
    after_imports, rewritten, after_rewrite = json.loads(out.stdout.strip().splitlines()[-1])
    assert after_imports == []
    # the name is resolved on first use: the Shapes caption language, and nothing heavier (no datasets, no scorer)
    assert rewritten == ["a red circle left of a blue square"]
    assert after_rewrite == ["hf_textimg.shapes", "hf_textimg.shapes.language", "hf_textimg.shapes.vocab"]

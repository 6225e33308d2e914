"""Imports transformers' and diffusers' own common test suites, which live outside this repository.

The suites are the libraries' `tests/` folders, read from a cache and never committed:

- transformers: `make upstream-tests` (part of `make test`) extracts `tests/` from the transformers
  sdist on PyPI for the installed version into `.cache/upstream-tests/transformers-<version>/tests`.
  `HF_TEXTIMG_UPSTREAM_TRANSFORMERS_TESTS` points elsewhere (e.g. a GitHub checkout's `tests/`).
- diffusers: its sdist ships no tests, so `HF_TEXTIMG_UPSTREAM_DIFFUSERS_TESTS` must name the `tests/`
  folder of a diffusers checkout (docs/conformance.md has the commands).

Both libraries call their folder `tests`, which is also this repository's, so each is imported as a
package of its own name (`upstream_transformers_tests`, `upstream_diffusers_tests`); their modules
import each other relatively, which keeps working under the new name. A missing folder skips the
module that asked for it, saying how to get it.
"""

from __future__ import annotations

import importlib
import os
import sys
import types
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
ENV_VARS = {"transformers": "HF_TEXTIMG_UPSTREAM_TRANSFORMERS_TESTS", "diffusers": "HF_TEXTIMG_UPSTREAM_DIFFUSERS_TESTS"}
HOW_TO_GET = {
    "transformers": "run `make upstream-tests` (downloads the transformers sdist from PyPI once)",
    "diffusers": "set HF_TEXTIMG_UPSTREAM_DIFFUSERS_TESTS to a diffusers checkout's tests/ (docs/conformance.md)",
}


def upstream_tests_dir(library: str) -> Path | None:
    """The folder holding `library`'s `tests/` package, or None when there is none to read."""
    folder = os.environ.get(ENV_VARS[library])
    if folder:
        return Path(folder)
    if library == "transformers":
        import transformers

        return REPO_ROOT / ".cache" / "upstream-tests" / f"transformers-{transformers.__version__}" / "tests"
    return None


def import_upstream(library: str, *module_names: str) -> list[types.ModuleType]:
    """Import `module_names` (dotted, relative to the upstream `tests/`) of `library`, or skip the calling module."""
    folder = upstream_tests_dir(library)
    if folder is None or not all(_module_file(folder, name) for name in module_names):
        where = f" (looked in {folder})" if folder else ""
        pytest.skip(f"the {library} common test suite is not here{where}: {HOW_TO_GET[library]}.", allow_module_level=True)
    package = f"upstream_{library}_tests"
    if package not in sys.modules:
        init = folder / "__init__.py"
        if not init.is_file():  # the sdist leaves out the empty package marker the suites import through
            init.touch()
        module = types.ModuleType(package)
        module.__path__, module.__file__ = [str(folder)], str(init)
        sys.modules[package] = module
        if library == "transformers":
            _stand_in_for_helpers_missing_from_sdist(package, folder)
    return [importlib.import_module(f"{package}.{name}") for name in module_names]


def _module_file(folder: Path, dotted: str) -> Path | None:
    """`folder`'s file of the module `dotted` names (a .py file or a package's __init__.py), if there is one."""
    path = folder / dotted.replace(".", "/")
    return next((f for f in (path.with_suffix(".py"), path / "__init__.py") if f.is_file()), None)


def _stand_in_for_helpers_missing_from_sdist(package: str, folder: Path) -> None:
    """The transformers sdist ships the top-level `tests/*.py` only; `test_modeling_common` and
    `test_configuration_common` import three modules from subfolders it leaves out. Each missing one is
    replaced by a stand-in (a GitHub checkout's own files are used when they are there):

    - `exporters.test_export.ExportTesterMixin`: an empty mixin, so the export (torch.export / ONNX)
      tests are not collected at all; docs/conformance.md says so.
    - `generation.test_utils.GenerationTesterMixin`: an empty class; only `issubclass` checks read it,
      and no class of ours generates text.
    - `utils.test_configuration_utils.config_common_kwargs`: `PretrainedConfig` keyword arguments that
      `ConfigTester.check_config_arguments_init` passes to a config and reads back; this stand-in lists
      the general ones of transformers v5 with non-default values.
    """
    stand_ins = {
        "exporters.test_export": {"ExportTesterMixin": type("ExportTesterMixin", (), {})},
        "generation.test_utils": {"GenerationTesterMixin": type("GenerationTesterMixin", (), {})},
        "utils.test_configuration_utils": {
            "config_common_kwargs": {
                "return_dict": False,
                "output_hidden_states": True,
                "output_attentions": True,
                "dtype": "float16",
                "chunk_size_feed_forward": 5,
                "architectures": ["SomeModel"],
                "id2label": {0: "label"},
                "label2id": {"label": "0"},
                "problem_type": "regression",
            }
        },
    }
    for dotted, attributes in stand_ins.items():
        if _module_file(folder, dotted):
            continue
        parent_name, _, child = f"{package}.{dotted}".rpartition(".")
        if parent_name not in sys.modules:
            parent = types.ModuleType(parent_name)
            parent.__path__ = []
            sys.modules[parent_name] = parent
        module = types.ModuleType(f"{parent_name}.{child}")
        module.__dict__.update(attributes)
        sys.modules[module.__name__] = module

"""Put transformers' common test suite for the installed version into `.cache/upstream-tests/` (once).

    python tests/upstream/fetch_upstream_tests.py     # `make upstream-tests`, part of `make test`

transformers publishes its top-level `tests/*.py` (ModelTesterMixin, ConfigTester, ...) in its sdist on
PyPI. This downloads that sdist with pip and keeps only `tests/`. Without network it says so and exits 0:
the upstream-suite tests then skip, naming this command. diffusers' sdist has no tests; see
docs/conformance.md for running its suites from a checkout.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

CACHE = Path(__file__).resolve().parents[2] / ".cache" / "upstream-tests"


def fetch_transformers_tests(version: str, cache: Path = CACHE) -> Path | None:
    """The folder holding transformers `version`'s `tests/`, downloading it if it is not cached; None when offline."""
    target = cache / f"transformers-{version}"
    if (target / "tests" / "test_modeling_common.py").is_file():
        return target / "tests"
    with tempfile.TemporaryDirectory() as download:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", f"transformers=={version}", "-d", download]
        if subprocess.run(cmd, capture_output=True, text=True).returncode != 0:
            return None
        (sdist,) = Path(download).glob("transformers-*.tar.gz")
        prefix = f"transformers-{version}/tests/"
        with tarfile.open(sdist) as archive:
            members = [m for m in archive.getmembers() if m.name.startswith(prefix) and m.isfile()]
            # filter="data" refuses links and absolute paths; Pythons before 3.10.12 / 3.11.4 lack it
            archive.extractall(cache, members=members, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    (target / "tests" / "__init__.py").touch()  # the package marker the suites' own imports go through
    return target / "tests"


def main() -> int:
    import transformers

    folder = fetch_transformers_tests(transformers.__version__)
    if folder is None:
        print(f"Could not download the transformers {transformers.__version__} sdist (offline?); the upstream-suite tests will skip.")
    else:
        print(f"transformers {transformers.__version__} common tests: {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

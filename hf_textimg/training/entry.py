"""The `if __name__ == "__main__":` of every training script: user errors as one line, like the `hf-textimg` CLI.

    if __name__ == "__main__":
        run_script(main)

A ValueError (a bad flag, data or checkpoint; the message names it) or an OSError (a model that cannot be found or
downloaded, a full disk) prints `<script>: error: <message>` and exits 2, argparse's code for usage errors; a run
that diverged (`TrainingDivergedError`) prints its one line and exits 1. Anything else is a bug and keeps its
traceback. `HF_TEXTIMG_TRACEBACK=1` shows the traceback of those as well.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from .safety import TrainingDivergedError


def run_script(main: Callable[[list[str]], object], argv: list[str] | None = None) -> None:
    """Call `main(argv or sys.argv[1:])` and exit 0, or print one error line and exit 2 (ValueError, OSError) / 1 (diverged)."""
    try:
        main(sys.argv[1:] if argv is None else argv)
    except (ValueError, OSError, TrainingDivergedError) as error:
        if os.environ.get("HF_TEXTIMG_TRACEBACK"):
            raise
        print(f"{Path(sys.argv[0]).name}: error: {error}", file=sys.stderr)
        sys.exit(1 if isinstance(error, TrainingDivergedError) else 2)
    sys.exit(0)

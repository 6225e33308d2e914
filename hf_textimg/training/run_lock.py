"""One training run per output folder: a lock file holding the owner's pid, host and start time.

Two runs pointed at one `--output_dir` would share checkpoint folders, delete each other's checkpoints, train with
each other's tokenizer and overwrite each other's model. So the main process of a run creates
``output_dir/.hf-textimg-train.lock`` (atomically: `O_CREAT | O_EXCL`) before anything else is written there, and a
second run that finds it is refused with a ValueError naming the owner.

A lock whose owner died without removing it (SIGKILL, out of memory, a machine reboot) is *stale*:
- on the same host, the owner is checked: if no process has its pid, or the process with that pid started at
  another time than the lock records (the pid was reused), the lock is taken over with a warning naming the dead
  run. Taking over rather than refusing is safe here because the check is exact, and it keeps the crash-recovery
  path one command (`--resume_from_checkpoint latest` after a kill) instead of two;
- on another host (a shared file system), whether the owner still runs cannot be checked from here, so the run is
  refused, and the message gives the command that removes the lock once the user knows that run is gone.

The lock is removed when the run ends (`release_output_dir`, called by `end_training`) and at interpreter exit.
Calling `main()` again in the same process (tests, notebooks) re-takes a lock this process already holds.
Not covered: two processes in different PID namespaces (containers) that report the same host name and share the
folder see each other's pids as dead; give containers distinct host names.
"""

from __future__ import annotations

import atexit
import datetime
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path

import psutil  # a dependency of accelerate

logger = logging.getLogger(__name__)

LOCK_NAME = ".hf-textimg-train.lock"
_held: dict[str, Path] = {}  # output folder -> lock file this process holds


def _process_start(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def _owner_record() -> dict:
    return {
        "pid": os.getpid(), "host": socket.gethostname(), "process_start": _process_start(os.getpid()),
        "started": datetime.datetime.now().isoformat(timespec="seconds"), "command": " ".join(sys.argv)[:500],
    }


def _read_owner(path: Path) -> dict | None:
    try:
        owner = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) and isinstance(owner.get("pid"), int) else None


def _owner_alive(owner: dict) -> bool:
    """Same host only: a process with the owner's pid exists and started when the owner did (pids get reused)."""
    started = _process_start(owner["pid"])
    if started is None:
        return False
    recorded = owner.get("process_start")
    return recorded is None or abs(started - recorded) < 1.0


def _describe(owner: dict) -> str:
    return f"pid {owner['pid']} on host {owner.get('host')!r}, started {owner.get('started')}: {owner.get('command', '')!r}"


def _refuse_or_take_over(path: Path, output_dir: str, owner: dict | None) -> bool:
    """Decide about an existing lock: True = it is ours or stale and was moved aside (retry), else raise."""
    me = _owner_record()
    if owner is None:  # unreadable: a run writing it this instant, or a crash between create and write
        if time.time() - path.stat().st_mtime < 10:
            time.sleep(0.5)
            return True
        logger.warning("Removing the unreadable lock file %s (older than 10 s, so no run is still writing it).", path)
    elif owner.get("host") == me["host"] and owner["pid"] == me["pid"]:
        return True  # this process: a previous main() here that raised
    elif owner.get("host") != me["host"]:
        raise ValueError(
            f"--output_dir {output_dir!r} is locked by a training run on another machine ({_describe(owner)}). Two runs in one "
            f"folder overwrite each other's checkpoints and model. Whether that run is still going cannot be checked from "
            f"here: if it is not, remove the lock with `rm {path}`; otherwise choose another --output_dir."
        )
    elif _owner_alive(owner):
        raise ValueError(
            f"--output_dir {output_dir!r} is in use by another training run ({_describe(owner)}). Two runs in one folder "
            "overwrite each other's checkpoints and model: wait for it to finish, stop it, or choose another --output_dir."
        )
    else:
        logger.warning("Taking over the lock of %s: its run (%s) is no longer running (it crashed or was killed).", output_dir, _describe(owner))
    try:
        os.replace(path, path.with_name(f"{LOCK_NAME}.stale-{me['pid']}"))  # atomic: of two runs taking over, one wins
        os.remove(path.with_name(f"{LOCK_NAME}.stale-{me['pid']}"))
    except FileNotFoundError:
        pass  # another run moved it first; the O_EXCL create decides between us
    return True


def lock_output_dir(output_dir: str | os.PathLike) -> Path:
    """Take the lock of `output_dir` (which must exist) for this process, or raise a ValueError naming its owner."""
    path = Path(output_dir) / LOCK_NAME
    for _ in range(20):
        owner = _read_owner(path) if path.exists() else None
        if owner is not None and owner.get("host") == socket.gethostname() and owner["pid"] == os.getpid():
            break  # already ours
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            _refuse_or_take_over(path, str(output_dir), _read_owner(path))
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(_owner_record(), f)
        break
    else:
        raise ValueError(f"--output_dir {str(output_dir)!r}: could not take the lock {path}; another run keeps taking it.")
    _held[str(Path(output_dir).resolve())] = path
    return path


def release_output_dir(output_dir: str | os.PathLike) -> None:
    """Remove the lock this process holds on `output_dir` (no-op if it holds none)."""
    path = _held.pop(str(Path(output_dir).resolve()), None)
    if path is not None:
        owner = _read_owner(path)
        if owner is not None and owner["pid"] == os.getpid():
            path.unlink(missing_ok=True)


@atexit.register
def _release_all() -> None:
    for folder in list(_held):
        release_output_dir(folder)

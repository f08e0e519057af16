"""JSON state of one sandbox (networks, peerings, hosts, helper processes), under a file lock."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path

from . import paths


def state_file(run: Path | None = None) -> Path:
    return (run or paths.run_dir()) / "state.json"


def empty(run: Path | None = None) -> dict:
    return {"tag": paths.sandbox_tag(run), "networks": {}, "peerings": [], "hosts": {},
            "next_index": 1, "imds": None, "arm": None}


def read(run: Path | None = None) -> dict:
    try:
        return json.loads(state_file(run).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return empty(run)


def _write(st: dict, run: Path | None = None) -> None:
    f = state_file(run)
    tmp = f.with_name(f".state.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(st, indent=1, sort_keys=True))
    os.replace(tmp, f)


@contextlib.contextmanager
def locked(run: Path | None = None):
    """Exclusive access to the state: yields the dict, writes it back on normal exit."""
    run = run or paths.run_dir()
    run.mkdir(parents=True, exist_ok=True)
    with open(run / "state.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        st = read(run)
        yield st
        _write(st, run)


def alloc_index(st: dict) -> int:
    i = st.get("next_index", 1)
    st["next_index"] = i + 1
    return i

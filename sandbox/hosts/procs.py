"""Processes found by their command line, for cleanup of what a sandbox started."""

from __future__ import annotations

from pathlib import Path


def pids_with_cmdline(needle: bytes) -> list[int]:
    """Pids whose command line (NUL-separated arguments, as in /proc/<pid>/cmdline) contains needle."""
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if needle in (p / "cmdline").read_bytes():
                    out.append(int(p.name))
            except OSError:
                pass
    return out

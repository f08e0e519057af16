"""Locations of the image cache and of a sandbox's runtime state."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

DEFAULT_CACHE = "/var/cache/hashistack-sandbox"
DEFAULT_RUN = "/run/hashistack-sandbox"


def cache_dir() -> Path:
    """Image cache + SSH key (survives sandboxes). Env HASHISTACK_SANDBOX_CACHE overrides."""
    return Path(os.environ.get("HASHISTACK_SANDBOX_CACHE") or DEFAULT_CACHE).absolute()


def run_dir() -> Path:
    """Runtime state of one sandbox (hosts, networks). Env HASHISTACK_SANDBOX_RUN overrides.

    Several sandboxes may exist side by side on one machine when they use different run
    directories: every kernel object (netns, bridge, veth, nft table) carries a short tag
    derived from the run directory, so ``down --all`` of one never touches another.
    """
    return Path(os.environ.get("HASHISTACK_SANDBOX_RUN") or DEFAULT_RUN).absolute()


def sandbox_tag(run: Path | None = None) -> str:
    """4 hex chars identifying the sandbox (run dir) in kernel object names."""
    run = (run or run_dir()).resolve()
    return hashlib.sha256(str(run).encode()).hexdigest()[:4]


def ssh_key_path() -> Path:
    """Private key (ed25519) that logs in as azureuser on every host."""
    return cache_dir() / "ssh" / "id_ed25519"

"""Entry point of the built executables (consul / nomad)."""

from __future__ import annotations

import hashlib
import json
import sys


def _build_info() -> dict:
    import importlib.resources as res
    return json.loads((res.files(__package__) / "_build_info.json").read_text())


def run_product(product: str, version: str, argv: list[str]) -> int:
    build = {"product": product, "version": version,
             "revision": hashlib.sha1(f"{product}-{version}-sandbox".encode()).hexdigest()}
    return _dispatch(build, argv)


def _dispatch(build: dict, argv: list[str]) -> int:
    if build["product"] == "consul":
        from .consul_cli import cli
    else:
        from .nomad import cli
    try:
        return cli(argv, build)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 1


def main() -> int:
    return _dispatch(_build_info(), sys.argv[1:])

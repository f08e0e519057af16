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
        from .nomad_cli import cli
    try:
        return cli(argv, build)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 1
    except Exception as e:  # noqa: BLE001 - a stand-in bug must read as an error, not as a Python traceback
        print(f"Error: internal error in the sandbox {build['product']} stand-in: {e!r}", file=sys.stderr)
        return 1


def main() -> int:
    return _dispatch(_build_info(), sys.argv[1:])

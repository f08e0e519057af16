"""python -m sandbox.agents {build,mirror,consul,nomad} ..."""

from __future__ import annotations

import argparse
import signal
import sys


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("consul", "nomad"):
        # run a stand-in directly from the source tree: python -m sandbox.agents consul VERSION args...
        from .runtime import run_product
        product, version = argv[0], argv[1]
        return run_product(product, version, argv[2:])
    ap = argparse.ArgumentParser(prog="python -m sandbox.agents")
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build release archives")
    b.add_argument("--consul", action="append", default=[], metavar="VERSION")
    b.add_argument("--nomad", action="append", default=[], metavar="VERSION")
    b.add_argument("--out", required=True)
    m = sub.add_parser("mirror", help="serve a release tree over HTTP")
    m.add_argument("--dir", required=True)
    m.add_argument("--port", type=int, required=True)
    m.add_argument("--bind", default="127.0.0.1")
    a = ap.parse_args(argv)
    if a.cmd == "build":
        from .build import build
        if not a.consul and not a.nomad:
            ap.error("give at least one --consul or --nomad version")
        for p in build(a.out, {"consul": a.consul, "nomad": a.nomad}):
            print(p)
        return 0
    from .mirror import serve
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    serve(a.dir, a.port, a.bind)
    return 0


if __name__ == "__main__":
    sys.exit(main())

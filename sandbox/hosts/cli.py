"""CLI: ``python -m sandbox.hosts <command>`` (run as root from the repository root).

Environment: HASHISTACK_SANDBOX_CACHE (image cache + SSH key, default
/var/cache/hashistack-sandbox), HASHISTACK_SANDBOX_RUN (state of one sandbox, default
/run/hashistack-sandbox).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from . import host, image, paths


def _print(obj) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser(prog="python -m sandbox.hosts", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("image", help="build / show the cached Debian 12 image")
    p.add_argument("action", choices=["build", "path", "hash", "prune"])
    p.add_argument("--force", action="store_true", help="rebuild even when cached")

    p = sub.add_parser("up", help="create and boot a host (waits until sshd answers)")
    p.add_argument("name")
    p.add_argument("--network", required=True)
    p.add_argument("--ip", required=True)
    p.add_argument("--hostname")
    p.add_argument("--prefix-len", type=int, default=24)
    p.add_argument("--custom-data", help="user-data file for cloud-init (NoCloud seed)")
    p.add_argument("--imds-json", help="IMDS /metadata/instance document for this host")
    p.add_argument("--principal-id", help="system-assigned identity (IMDS tokens via the ARM emulator)")
    p.add_argument("--no-wait", action="store_true")
    p.add_argument("--timeout", type=float, default=60)

    p = sub.add_parser("down", help="destroy a host, or the whole sandbox with --all")
    p.add_argument("name", nargs="?")
    p.add_argument("--all", action="store_true")

    for c, h in (("stop", "halt a host (root kept)"), ("start", "boot a stopped host"),
                 ("restart", "reboot a host (root kept)"),
                 ("reimage", "reset the root to the image, cloud-init runs again")):
        p = sub.add_parser(c, help=h)
        p.add_argument("name")
        if c == "stop":
            p.add_argument("--power-off", action="store_true",
                           help="no shutdown inside: the machine is lost at once, as a host failure takes it")

    sub.add_parser("list", help="hosts as JSON")
    sub.add_parser("leftovers", help="kernel objects of this sandbox that still exist (JSON)")
    sub.add_parser("ssh-key", help="print the private key path (user azureuser)")

    p = sub.add_parser("exec", help="run a command inside a host: exec NAME -- CMD...")
    p.add_argument("name")

    p = sub.add_parser("network", help="networks (bridges) and their connections (peering)")
    p.add_argument("action", choices=["create", "delete", "connect", "disconnect", "list"])
    p.add_argument("names", nargs="*")
    p.add_argument("--cidr", action="append", default=[])

    p = sub.add_parser("expose", help="make a controller service on 127.0.0.1:PORT reachable from every "
                       "host as <gateway>:PORT (also as sandbox-controller:PORT)")
    p.add_argument("port", type=int)
    p.add_argument("--to", type=int, help="loopback port on the controller (default: the same port)")
    p.add_argument("--remove", action="store_true")

    p = sub.add_parser("arm", help="point hosts at an ARM emulator (gateway:443 + CA + IMDS tokens)")
    p.add_argument("--url", help="emulator base URL, e.g. https://127.0.0.1:8443 (omit to unset)")
    p.add_argument("--ca", help="emulator CA (DIR/ca.pem)")

    a = ap.parse_args(argv)
    if os.geteuid() != 0 and a.cmd not in ("ssh-key",):
        print("sandbox.hosts must run as root", file=sys.stderr)
        return 2
    try:
        return _run(a, extra)
    except host.SandboxError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


def _run(a, extra: list[str]) -> int:
    if a.cmd == "image":
        if a.action == "build":
            print(image.build(force=a.force))
        elif a.action == "path":
            cur = image.current_image()
            print(cur or "")
            return 0 if cur else 1
        elif a.action == "prune":
            _print({"removed": image.prune()})
        else:
            print(image.recipe_hash())
    elif a.cmd == "up":
        imds = json.load(open(a.imds_json)) if a.imds_json else None
        h = host.up(a.name, a.network, a.ip, hostname=a.hostname, prefix_len=a.prefix_len,
                    custom_data=a.custom_data, imds=imds, principal_id=a.principal_id,
                    wait=not a.no_wait, timeout=a.timeout)
        _print({"name": h["name"], "ip": h["ip"], "hostname": h["hostname"],
                "ready_seconds": round(h.get("ready_seconds", 0), 2)})
    elif a.cmd == "down":
        if a.all:
            _print(host.down_all())
        elif a.name:
            host.down(a.name)
        else:
            raise host.SandboxError("down: give a host name or --all")
    elif a.cmd == "stop":
        host.stop(a.name, power_off=a.power_off)
    elif a.cmd in ("start", "restart", "reimage"):
        r = {"start": host.start, "restart": host.restart, "reimage": host.reimage}[a.cmd](a.name)
        if isinstance(r, dict):
            _print({"name": a.name, "ready_seconds": round(r.get("ready_seconds", 0), 2)})
    elif a.cmd == "list":
        _print(host.list_hosts())
    elif a.cmd == "leftovers":
        _print(host.leftovers())
    elif a.cmd == "ssh-key":
        print(image.ensure_ssh_key())
    elif a.cmd == "exec":
        if not extra:
            raise host.SandboxError("exec: give the command after --")
        return host.exec_(a.name, extra).returncode
    elif a.cmd == "network":
        if a.action == "create":
            for n in a.names:
                host.network_create(n, a.cidr)
        elif a.action == "delete":
            for n in a.names:
                host.network_delete(n)
        elif a.action in ("connect", "disconnect"):
            if len(a.names) != 2:
                raise host.SandboxError(f"network {a.action} needs two network names")
            host.network_connect(*a.names, connect=a.action == "connect")
        else:
            from . import state
            st = state.read()
            _print({"networks": st["networks"], "peerings": st["peerings"]})
    elif a.cmd == "expose":
        host.expose(a.port, a.to or a.port, remove=a.remove)
    elif a.cmd == "arm":
        host.set_arm(a.url, a.ca)
    return 0


__all__ = ["main", "paths"]

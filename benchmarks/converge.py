#!/usr/bin/env python3
"""Benchmark: converge time of the consul + nomad roles for 3 servers + 2 clients on sandbox hosts.

    sudo .venv/bin/python benchmarks/converge.py [--keep]

Boots five sandbox hosts (systemd-nspawn) on a network of their own, builds the stand-in release
tree and serves it on the network's gateway, then runs molecule/default/converge.yml twice with
ansible-playbook: the first run installs and forms the cluster, the second must change nothing.
Prints wall time and the changed task counts of both runs; exits non-zero when the re-run changed
anything. Everything is torn down at the end (unless --keep).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
NET, PREFIX = "bench-converge", "10.251.77."
GATEWAY, MIRROR_PORT = PREFIX + "1", 18977
SERVERS = ["server-1", "server-2", "server-3"]
CLIENTS = ["client-1", "client-2"]


def _hosts(env, *args, check=True) -> str:
    return subprocess.run([PY, "-m", "sandbox.hosts", *args], cwd=ROOT, env=env, check=check,
                          capture_output=True, text=True).stdout


def _inventory(work: Path, key: str, ips: dict[str, str]) -> Path:
    spec = {"cluster": "bench", "consul_datacenter": "dc1", "nomad_region": "global", "server_count": 3,
            "server_pool": "servers",
            "pools": {"servers": {"location": "westeurope"}, "web": {"location": "westeurope", "nomad_datacenter": "web"}}}
    common = {"ansible_user": "azureuser", "ansible_ssh_private_key_file": key, "ansible_become": True,
              "ansible_python_interpreter": "/usr/bin/python3",
              "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
              "hashicorp_release_base_url": f"http://{GATEWAY}:{MIRROR_PORT}",
              "hashicorp_release_gpg_key": (work / "releases" / "sandbox-release-key.asc").read_text(),
              "hashicorp_release_gpg_fingerprint": "",
              "hashicorp_release_cache_dir": str(work / "cache"),
              "hashistack_secrets_dir": str(work / "secrets"),
              "hashistack_spec": spec, "consul_version": "1.20.1", "nomad_version": "1.9.3",
              "consul_join_method": "inventory", "nomad_join_method": "inventory",
              "consul_autopilot": {"cleanup_dead_servers": True, "last_contact_threshold": "200ms",
                                   "server_stabilization_time": "3s"}}
    hosts = {h: {"ansible_host": ips[h]} for h in SERVERS + CLIENTS}
    inv = {"all": {"vars": common, "children": {
        "consul_servers": {"hosts": {h: hosts[h] for h in SERVERS}},
        "nomad_servers": {"hosts": {h: {} for h in SERVERS}},
        "pool_servers": {"hosts": {h: {} for h in SERVERS}, "vars": {"hashistack_pool": "servers"}},
        "consul_clients": {"hosts": {h: hosts[h] for h in CLIENTS}},
        "nomad_clients": {"hosts": {h: {} for h in CLIENTS}},
        "pool_web": {"hosts": {h: {} for h in CLIENTS}, "vars": {"hashistack_pool": "web"}}}}}
    p = work / "inventory.json"
    p.write_text(json.dumps(inv))
    return p


def _converge(inv: Path, log: Path) -> tuple[float, dict[str, int], int]:
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".cache" / "collections"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_HOST_KEY_CHECKING="false", ANSIBLE_PIPELINING="true", ANSIBLE_FORKS="10",
               ANSIBLE_INVENTORY_ENABLED="ansible.builtin.yaml")
    t0 = time.monotonic()
    p = subprocess.run([str(Path(PY).parent / "ansible-playbook"), "-i", str(inv),
                        str(ROOT / "molecule" / "default" / "converge.yml")], env=env, capture_output=True, text=True)
    dt = time.monotonic() - t0
    log.write_text(p.stdout + p.stderr)
    changed = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)", p.stdout, re.M)}
    return dt, changed, p.returncode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keep", action="store_true", help="leave hosts and mirror running")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-converge-"))
    env = dict(os.environ, HASHISTACK_SANDBOX_RUN="/run/hashistack-sandbox/bench-converge")
    mirror = None
    try:
        _hosts(env, "image", "build")
        key = _hosts(env, "ssh-key").strip()
        ips = {}
        t0 = time.monotonic()
        for i, h in enumerate(SERVERS + CLIENTS):
            ips[h] = PREFIX + str(11 + i)
            _hosts(env, "up", f"bench-{h}", "--network", NET, "--ip", ips[h], "--hostname", h)
        boot = time.monotonic() - t0
        subprocess.run([PY, "-m", "sandbox.agents", "build", "--consul", "1.20.1", "--nomad", "1.9.3",
                        "--out", str(work / "releases")], cwd=ROOT, check=True, capture_output=True)
        mirror = subprocess.Popen([PY, "-m", "sandbox.agents", "mirror", "--dir", str(work / "releases"),
                                   "--port", str(MIRROR_PORT), "--bind", GATEWAY], cwd=ROOT,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1)
        inv = _inventory(work, key, ips)
        first = _converge(inv, work / "first.log")
        second = _converge(inv, work / "second.log") if first[2] == 0 else (0.0, {}, -1)
        rows = [("hosts booted (5)", f"{boot:.1f}", "-", "-"),
                ("first converge", f"{first[0]:.1f}", str(sum(first[1].values())), "ok" if first[2] == 0 else f"rc={first[2]}"),
                ("no-change re-run", f"{second[0]:.1f}", str(sum(second[1].values())),
                 "ok" if second[2] == 0 else f"rc={second[2]}")]
        print(f"{'step':<20} {'seconds':>8} {'changed':>8}  result")
        for r in rows:
            print(f"{r[0]:<20} {r[1]:>8} {r[2]:>8}  {r[3]}")
        if second[1]:
            print("changed per host on re-run: " + ", ".join(f"{h}={c}" for h, c in sorted(second[1].items())))
        print(f"logs: {work}/first.log {work}/second.log")
        ok = first[2] == 0 and second[2] == 0 and sum(second[1].values()) == 0
        return 0 if ok else 1
    finally:
        if not a.keep:
            if mirror:
                mirror.send_signal(signal.SIGTERM)
                mirror.wait(10)
            _hosts(env, "down", "--all", check=False)


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark of the agent stand-ins' leadership changes: a planned transfer against the loss of the leader.

    .venv/bin/python benchmarks/agents_leadership.py [--product consul|nomad] [--multiplier N] [--rounds 3]

Boots three servers (the products' default raft multiplier unless given: Consul 5, Nomad 1) on a private
loopback block, then per round: transfers leadership with the operator command and times until another
server answers as leader; kills the leader and times until a new one is elected; restarts it. Prints a
table. The gap between the two columns is what the upgrade playbook saves by transferring leadership
before it restarts the leader.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]


def _block() -> str:
    for _ in range(50):
        base = f"127.{random.randint(100, 250)}.{random.randint(1, 250)}"
        with socket.socket() as s:
            try:
                s.bind((f"{base}.1", 8500))
                return base
            except OSError:
                continue
    raise RuntimeError("no free loopback block")


def _get(url, timeout=1.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read() or b"null")


def _cfg(product, base, i, mult):
    join = [f"{base}.{j}" for j in (1, 2, 3) if j != i]
    if product == "consul":
        m = f"performance {{ raft_multiplier = {mult} }}\n" if mult else ""
        return (f'node_name = "s{i}"\ndata_dir = "data"\nserver = true\nbootstrap_expect = 3\nbind_addr = "{base}.{i}"\n'
                f'client_addr = "{base}.{i}"\nretry_join = {json.dumps(join)}\nretry_interval = "1s"\n{m}')
    m = f"  raft_multiplier = {mult}\n" if mult else ""
    return (f'name = "s{i}"\ndata_dir = "data"\nbind_addr = "{base}.{i}"\nserver {{\n  enabled = true\n  bootstrap_expect = 3\n'
            f'{m}  server_join {{\n    retry_join = {json.dumps(join)}\n    retry_interval = "1s"\n  }}\n}}\n'
            f'consul {{\n  auto_advertise = false\n  server_auto_join = false\n}}\n')


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--product", choices=("consul", "nomad"), default="consul")
    ap.add_argument("--multiplier", type=int, default=0, help="raft multiplier (0: the product's default)")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    product, port = a.product, 8500 if a.product == "consul" else 4646
    version = "1.20.1" if product == "consul" else "1.9.3"
    base = _block()
    work = Path(tempfile.mkdtemp(prefix="bench-leadership-"))
    procs: dict[int, subprocess.Popen] = {}

    def start(i):
        d = work / f"s{i}"
        (d / "config").mkdir(parents=True, exist_ok=True)
        (d / "config" / "agent.hcl").write_text(_cfg(product, base, i, a.multiplier))
        flag = "-config-dir" if product == "consul" else "-config"
        log = open(d / "agent.log", "ab")
        procs[i] = subprocess.Popen([sys.executable, "-m", "sandbox.agents", product, version, "agent", flag, str(d / "config")],
                                    cwd=d, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                    env=dict(os.environ, PYTHONPATH=str(ROOT)))

    def leader(i):
        try:
            return _get(f"http://{base}.{i}:{port}/v1/status/leader") or None
        except OSError:
            return None

    def wait_leader(not_addr=None, skip=None, timeout=120):
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            for i in (1, 2, 3):
                if i != skip:
                    lead = leader(i)
                    if lead and lead != not_addr:
                        return lead, time.monotonic() - t0
            time.sleep(0.02)
        raise RuntimeError("no leader")

    rows = []
    try:
        for i in (1, 2, 3):
            start(i)
        lead, _ = wait_leader()
        time.sleep(3)
        for rnd in range(a.rounds):
            lead, _ = wait_leader()
            t0 = time.monotonic()
            cmd = ["operator", "raft", "transfer-leader"] if product == "consul" else \
                ["operator", "raft", "transfer-leadership", f"-peer-address={next(p for p in _peers(base, port) if p != lead)}"]
            env = dict(os.environ, PYTHONPATH=str(ROOT), CONSUL_HTTP_ADDR=f"{base}.1:{port}", NOMAD_ADDR=f"http://{base}.1:{port}")
            subprocess.run([sys.executable, "-m", "sandbox.agents", product, version, *cmd], env=env, check=True,
                           capture_output=True)
            new, _ = wait_leader(not_addr=lead)
            transfer = time.monotonic() - t0
            time.sleep(2)
            idx = next(i for i in (1, 2, 3) if new.startswith(f"{base}.{i}:"))
            t0 = time.monotonic()
            os.killpg(procs[idx].pid, signal.SIGKILL)
            _, _ = wait_leader(not_addr=new, skip=idx)
            failover = time.monotonic() - t0
            rows.append((rnd + 1, transfer, failover))
            start(idx)
            time.sleep(5)
    finally:
        for p in procs.values():
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
    mult = a.multiplier or (5 if product == "consul" else 1)
    print(f"\n{product} stand-in, 3 servers, raft_multiplier {mult}: seconds until another server leads")
    print("| round | planned transfer | leader lost (election) |")
    print("|---|---|---|")
    for r, t, f in rows:
        print(f"| {r} | {t:.2f} | {f:.2f} |")
    print(f"| median | {statistics.median(r[1] for r in rows):.2f} | {statistics.median(r[2] for r in rows):.2f} |")
    return 0


def _peers(base, port):
    cfg = _get(f"http://{base}.1:{port}/v1/operator/raft/configuration")
    return [s["Address"] for s in cfg["Servers"]]


if __name__ == "__main__":
    sys.exit(main())

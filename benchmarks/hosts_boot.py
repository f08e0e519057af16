"""Benchmark of sandbox/hosts: boot time to sshd-ready and memory per host.

    sudo .venv/bin/python benchmarks/hosts_boot.py [--hosts 6]

Boots N hosts one after another, then N in parallel (each in a fresh sandbox of its own run
dir), and prints a table: seconds from the `up` request until sshd answers, and memory of each
host after cloud-init finished (PSS and RSS summed over the host's processes, the memory
charged to its cgroup, and the upper dir of its copy-on-write root).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sandbox.hosts import host, image  # noqa: E402


def _mem_kb(pid: int) -> tuple[int, int]:
    pss = rss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1])
            elif line.startswith("Rss:"):
                rss = int(line.split()[1])
    except OSError:
        pass
    return pss, rss


def host_memory(name: str) -> tuple[float, float, float, float]:
    """(PSS MiB, RSS MiB, cgroup MiB, upper dir MiB) of a host: its container processes + nspawn."""
    h = host.get(name)
    leader = host.leader_pid(h)
    pids = [p for p in (host.nspawn_pid(h),) if p]
    if leader:
        pids += [leader, *host._descendants(leader)]
    pss = rss = 0
    for p in pids:
        a, b = _mem_kb(p)
        pss += a
        rss += b
    du = subprocess.run(["du", "-sk", f"{h['dir']}/upper"], capture_output=True, text=True).stdout.split()
    cg = host.memory_bytes(h)
    return pss / 1024, rss / 1024, (cg / 2**20 if cg is not None else float("nan")), (int(du[0]) / 1024 if du else 0.0)


def run_round(label: str, n: int, parallel: bool) -> list[dict]:
    run = Path(tempfile.mkdtemp(prefix="hsb-bench-", dir="/run"))
    os.environ["HASHISTACK_SANDBOX_RUN"] = str(run)
    rows = []
    try:
        host.ensure_imds()

        def one(i: int) -> dict:
            t0 = time.monotonic()
            host.up(f"b{i}", "bench", f"10.96.7.{11 + i}", timeout=120)
            return {"name": f"b{i}", "boot": time.monotonic() - t0}

        if parallel:
            t0 = time.monotonic()
            with ThreadPoolExecutor(max_workers=n) as pool:
                rows = list(pool.map(one, range(n)))
            wall = time.monotonic() - t0
        else:
            t0 = time.monotonic()
            rows = [one(i) for i in range(n)]
            wall = time.monotonic() - t0
        for r in rows:   # steady state: after cloud-init's last stage
            host.exec_(r["name"], ["cloud-init", "status", "--wait"], timeout=120)
        time.sleep(1)
        for r in rows:
            r["pss"], r["rss"], r["cgroup"], r["upper"] = host_memory(r["name"])
            r["mode"] = label
        rows.append({"name": "all", "mode": label, "boot": wall,
                     "pss": sum(r["pss"] for r in rows), "rss": sum(r["rss"] for r in rows),
                     "cgroup": sum(r["cgroup"] for r in rows),
                     "upper": sum(r["upper"] for r in rows)})
    finally:
        host.down_all()
        shutil.rmtree(run, ignore_errors=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=6)
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("run as root", file=sys.stderr)
        return 2
    image.build()
    rows = run_round("sequential", a.hosts, False) + run_round("parallel", a.hosts, True)
    print(f"sandbox/hosts boot benchmark: {a.hosts} hosts, {os.cpu_count()} CPUs, image {image.recipe_hash()}")
    print(f"{'mode':<11} {'host':<5} {'boot to sshd (s)':>17} {'PSS (MiB)':>10} {'RSS (MiB)':>10} "
          f"{'cgroup (MiB)':>13} {'upper dir (MiB)':>16}")
    for r in rows:
        boot = f"{r['boot']:.2f}" + (" wall" if r["name"] == "all" else "")
        print(f"{r['mode']:<11} {r['name']:<5} {boot:>17} {r['pss']:>10.1f} {r['rss']:>10.1f} "
              f"{r['cgroup']:>13.1f} {r['upper']:>16.1f}")
    print("PSS/RSS: processes of the host (systemd-nspawn + the container); cgroup: memory charged to the "
          "host's memory cgroup (includes page cache of its files); upper dir: its copy-on-write root on disk")
    return 0


if __name__ == "__main__":
    sys.exit(main())

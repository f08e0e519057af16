"""Benchmark: upgrading Consul and Nomad on the sandbox cluster under load, playbooks/upgrade.yml against the naive
way (re-running site.yml with the new versions in the spec), side by side.

For each way: a fresh sandbox (`scripts/sandbox.sh up`: 3 servers, clients west and north, Consul 1.20.0, Nomad
1.9.2), a KV writer on the west client (a key every 0.25 s through its own agent, a failed write retried for up to
2 s) and a Nomad service job with two allocations; then the upgrade to Consul 1.20.1 / Nomad 1.9.3; `down`.
Prints writes attempted, failed after retries, acknowledged writes lost, the longest gap between two acknowledged
writes, the fewest allocations running at once and allocations lost, and the upgrade's wall time against the waits
the products impose (autopilot's server stabilization time per server restart plus the Nomad drains).
Needs root and systemd-nspawn; run under the hosts lock:

    flock /tmp/hashistack-hosts.lock .venv/bin/python benchmarks/upgrade.py [--ways upgrade naive]
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.e2e.cluster import (  # noqa: E402 (the e2e tests' helpers)
    AllocSampler,
    KvWriter,
    load_env,
    machines,
    nomad_api,
    own_sandbox,
    server_api,
    stamp,
)

JOB = 'bench-upgrade'
NEW = {'consul_version': '1.20.1', 'nomad_version': '1.9.3'}


def duration(text: str) -> float:
    """A Go duration as the products' APIs print it (10s, 1m30s, 250ms) in seconds."""
    units = {'h': 3600, 'm': 60, 's': 1, 'ms': 0.001, 'us': 1e-6, 'ns': 1e-9}
    return sum(float(n) * units[u] for n, u in re.findall(r'([\d.]+)(ms|us|ns|h|m|s)', text))


def naive_spec(state: Path) -> Path:
    """The sandbox spec with the new versions: what a user would edit before re-running site.yml."""
    text = (ROOT / 'sandbox/main/spec.yml').read_text()
    for key, version in NEW.items():
        text = re.sub(rf'^(  {key}:).*$', rf'\g<1> {version}', text, flags=re.M)
    path = state / 'spec-new.yml'
    path.write_text(text)
    return path


def one(way: str) -> dict:
    with tempfile.TemporaryDirectory(prefix=f'bench-upgrade-{way}-') as state:
        box = own_sandbox(Path(state))
        try:
            box['run']('up')
            load_env(box)
            nomad_api(box, '/v1/jobs', 'POST', {'Job': {
                'ID': JOB, 'Name': JOB, 'Type': 'service', 'Datacenters': ['westeurope', 'northeurope'],
                'TaskGroups': [{'Name': 'g', 'Count': 2, 'Tasks': [{
                    'Name': 't', 'Driver': 'exec', 'Config': {'command': '/bin/sleep', 'args': ['3600']},
                    'Resources': {'CPU': 10, 'MemoryMB': 8}}]}]}})
            allocs = AllocSampler(box, JOB)
            while not (allocs.samples and allocs.samples[-1] == 2):
                time.sleep(1)
            writer = KvWriter(box, sorted(h for h in machines(box) if 'west' in h)[0])
            time.sleep(3)
            t0 = time.monotonic()
            if way == 'upgrade':
                box['run']('upgrade')
            else:
                box['run']('site', '-e', f'@{naive_spec(Path(state))}')
            wall = time.monotonic() - t0
            time.sleep(2)
            writer.stop()
            samples = allocs.stop()
            record, lost = writer.record(), writer.lost()
            stabilization = sum(duration(server_api(box, port, '/v1/operator/autopilot/configuration')
                                         .get('ServerStabilizationTime', '0s')) for port in (8500, 4646)) * 3
            drains = 0.0
            for node in nomad_api(box, '/v1/nodes'):
                last = nomad_api(box, f"/v1/node/{node['ID']}").get('LastDrain') or {}
                start, end = stamp(last.get('StartedAt')), stamp(last.get('UpdatedAt'))
                if start and end:
                    drains += max(0.0, end - start)
            lost_allocs = sum(a['ClientStatus'] == 'lost' for a in nomad_api(box, f'/v1/job/{JOB}/allocations'))
        finally:
            box['run']('down', check=False)
    return dict(way=way, attempted=len(record['acked']) + len(record['failed']), failed=len(record['failed']),
                lost=len(lost), gap=record['longest_gap'], min_allocs=min(samples) if samples else None,
                lost_allocs=lost_allocs, wall=wall, imposed=stabilization + drains)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--ways', nargs='+', choices=['upgrade', 'naive'], default=['upgrade', 'naive'])
    args = parser.parse_args()
    rows = [one(way) for way in args.ways]
    names = {'upgrade': 'upgrade.yml', 'naive': 'site.yml, new versions'}
    print('Consul 1.20.0 -> 1.20.1 and Nomad 1.9.2 -> 1.9.3 on the sandbox (3 servers, 2 clients), a KV writer '
          '(every 0.25 s, retries 2 s) and a 2-allocation service job running')
    print()
    print('| way | writes | failed after retries | acked lost | longest gap | fewest allocs running | allocs lost '
          '| wall time | waits imposed |')
    print('|---|---:|---:|---:|---:|---:|---:|---:|---:|')
    for r in rows:
        print(f"| {names[r['way']]} | {r['attempted']} | {r['failed']} | {r['lost']} | {r['gap']:.2f} s "
              f"| {r['min_allocs']} | {r['lost_allocs']} | {r['wall']:.1f} s | {r['imposed']:.1f} s |")
    print()
    print('waits imposed: autopilot ServerStabilizationTime (Consul and Nomad) x 3 server restarts each, plus the '
          'Nomad drains (LastDrain start to end); the rest of the wall time is Ansible and the agents restarting.')


if __name__ == '__main__':
    main()

"""Benchmark: provision the cluster's Azure footprint with the collection's modules against sandbox/arm.

One server scale set (3) and two client pools (5 + 5, one in a second location), networks per location with
peering, an NSG per location, quota preflight and Reader role assignments, with 50 ms latency injected per ARM
request. Runs benchmarks/provision.yml through ansible-playbook: first the concurrent (async) variant, then the
no-change re-run, then (unless --no-sequential) the same provisioning one task after another on a fresh
resource group for comparison. Prints a table: wall time, ARM requests, writes.

    .venv/bin/python benchmarks/provision.py [--latency-ms 50] [--provisioning-seconds 1] [--no-sequential]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
sys.path.insert(0, ROOT)
BIN = os.path.join(ROOT, '.venv', 'bin')
PLAYBOOK = os.path.join(ROOT, 'benchmarks', 'provision.yml')
_NOT_ARM = re.compile(r'^/(_sandbox/|metadata/endpoints|[^/]+/(v2\.0/)?\.well-known/|[^/]+/oauth2/|[^/]+/discovery/|common/)', re.I)

from sandbox.arm.testing import ArmEmulator  # noqa: E402


def run(arm, rg, asynchronous, tmp):
    env = dict(os.environ)
    env.update(arm.env())
    env.update({'ANSIBLE_COLLECTIONS_PATH': os.path.join(ROOT, '.cache', 'collections'), 'ANSIBLE_NOCOLOR': '1',
                'ANSIBLE_LOCAL_TEMP': os.path.join(tmp, 'tmp'), 'ANSIBLE_ASYNC_DIR': os.path.join(tmp, 'async'),
                'ANSIBLE_PYTHON_INTERPRETER': os.path.join(BIN, 'python'), 'PATH': BIN + os.pathsep + env.get('PATH', '')})
    since = arm.mark()
    start = time.monotonic()
    proc = subprocess.run([os.path.join(BIN, 'ansible-playbook'), '-i', 'localhost,', PLAYBOOK,
                           '-e', f'hs_rg={rg}', '-e', f'hs_async={str(asynchronous).lower()}'],
                          env=env, capture_output=True, text=True, check=False)
    wall = time.monotonic() - start
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-6000:] + proc.stderr[-3000:])
        raise SystemExit(f'ansible-playbook failed ({proc.returncode})')
    entries = arm.requests(since)
    api = [e for e in entries if not _NOT_ARM.match(e['path'])]
    writes = [e for e in api if e['method'] in ('PUT', 'PATCH', 'POST', 'DELETE')]
    return dict(wall=wall, api=len(api), writes=len(writes), total=len(entries), gets=len([e for e in api if e['method'] == 'GET']))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--latency-ms', type=float, default=50)
    parser.add_argument('--provisioning-seconds', type=float, default=1.0)
    parser.add_argument('--no-sequential', action='store_true')
    args = parser.parse_args()
    arm = ArmEmulator(latency_ms=args.latency_ms, provisioning_seconds=args.provisioning_seconds).start()
    rows = []
    try:
        arm.set_quotas({loc: {'standardDSv3Family': 1000, 'cores': 1000} for loc in ('westeurope', 'eastus')})
        tmp = arm.state_dir
        rows.append(('provision (concurrent)', run(arm, 'hs-bench-a', True, tmp)))
        rows.append(('re-run, no change', run(arm, 'hs-bench-a', True, tmp)))
        if not args.no_sequential:
            rows.append(('provision (sequential)', run(arm, 'hs-bench-b', False, tmp)))
            rows.append(('re-run, no change (seq.)', run(arm, 'hs-bench-b', False, tmp)))
    finally:
        arm.stop()
        arm.cleanup()
    print(f'Provisioning benchmark: 1 server VMSS (3) + 2 client pools (5 + 5, 2 locations), vnets, peering, NSGs, '
          f'role assignments; {args.latency_ms:g} ms ARM latency, {args.provisioning_seconds:g} s instance provisioning')
    print()
    print(f"| {'run':<26} | {'wall time':>9} | {'ARM requests':>12} | {'GET':>5} | {'writes':>6} |")
    print(f"|{'-' * 28}|{'-' * 11}|{'-' * 14}|{'-' * 7}|{'-' * 8}|")
    for name, r in rows:
        print(f"| {name:<26} | {r['wall']:>8.1f}s | {r['api']:>12} | {r['gets']:>5} | {r['writes']:>6} |")
    print()
    print('ARM requests exclude token, cloud-metadata and admin calls; writes = PUT/PATCH/POST/DELETE.')


if __name__ == '__main__':
    main()

"""Benchmark: the main job, playbooks/site.yml on the sandbox (3 servers + 2 client pools of 1 in two locations).

Runs `scripts/sandbox.sh up` on a fresh sandbox (first run: emulator start, Azure footprint, boot of the
instances, Consul, Nomad, verify with the smoke jobs), then `scripts/sandbox.sh site` (the no-change re-run),
then `down`. Prints a table: wall time, tasks per host (ok + skipped from the recap, min-max over the instances),
changed, ARM requests and writes (ARM paths under /subscriptions/, token calls excluded). Needs root and
systemd-nspawn; run under the hosts lock:

    flock /tmp/hashistack-hosts.lock .venv/bin/python benchmarks/site.py [--reruns 1]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
SCRIPT = os.path.join(ROOT, 'scripts', 'sandbox.sh')
WRITES = {'PUT', 'PATCH', 'POST', 'DELETE'}


def recap(stdout: str) -> dict[str, dict[str, int]]:
    rows = {}
    for line in stdout.split('PLAY RECAP')[-1].splitlines():
        if ':' in line and 'ok=' in line:
            host, _, counts = line.partition(':')
            rows[host.strip()] = {k: int(v) for k, v in (c.split('=') for c in counts.split())}
    return rows


class Sandbox:
    def __init__(self, state: str):
        self.env = dict(os.environ, HASHISTACK_SANDBOX_STATE=state, ANSIBLE_NOCOLOR='1')
        self.env.pop('HASHISTACK_SANDBOX_RUN', None)
        self.arm = None

    def run(self, *args: str) -> tuple[float, subprocess.CompletedProcess]:
        start = time.monotonic()
        proc = subprocess.run([SCRIPT, *args], env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=3600)
        wall = time.monotonic() - start
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout[-6000:] + proc.stderr[-3000:])
            raise SystemExit(f'sandbox.sh {" ".join(args)} failed ({proc.returncode})')
        return wall, proc

    def _arm_env(self) -> dict:
        if self.arm is None:
            _, proc = self.run('env')
            self.arm = {}
            for line in proc.stdout.splitlines():
                for assignment in shlex.split(line)[1:]:
                    key, _, value = assignment.partition('=')
                    self.arm[key] = value
        return self.arm

    def requests(self, since: int) -> tuple[int, list[dict]]:
        env = self._arm_env()
        ctx = ssl.create_default_context(cafile=env['AZURE_CA_BUNDLE'])
        url = env['AZURE_CLOUD_ENVIRONMENT'].rstrip('/') + f'/_sandbox/requests?since={since}'
        with urllib.request.urlopen(url, context=ctx) as resp:
            body = json.load(resp)
        return body['next'], body['requests']


def measure(name: str, wall: float, stdout: str, requests: list[dict], load: float) -> dict:
    rows = recap(stdout)
    hosts = {h: r for h, r in rows.items() if h != 'localhost'}
    tasks = [r['ok'] + r['skipped'] for r in hosts.values()] or [0]
    api = [r for r in requests if r['path'].lower().startswith('/subscriptions/')]
    return dict(name=name, wall=wall, load=load, hosts=len(hosts), tasks=f'{min(tasks)}-{max(tasks)}',
                localhost=rows.get('localhost', {}).get('ok', 0) + rows.get('localhost', {}).get('skipped', 0),
                changed=sum(r['changed'] for r in rows.values()), api=len(api),
                writes=len([r for r in api if r['method'] in WRITES]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--reruns', type=int, default=1, help='no-change re-runs to time (default 1)')
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix='bench-site-') as state:
        box = Sandbox(state)
        try:
            load = os.getloadavg()[0]
            wall, proc = box.run('up')
            mark, requests = box.requests(0)
            rows.append(measure('first `sandbox.sh up`', wall, proc.stdout, requests, load))
            for i in range(args.reruns):
                load = os.getloadavg()[0]
                wall, proc = box.run('site')
                mark, requests = box.requests(mark)
                rows.append(measure(f're-run, no change #{i + 1}', wall, proc.stdout, requests, load))
        finally:
            subprocess.run([SCRIPT, 'down'], env=box.env, cwd=ROOT, capture_output=True, text=True, check=False)
    print('playbooks/site.yml on the sandbox: 3 servers + 2 client pools (1 + 1, two locations); '
          'ARM emulator with hosts, stand-in agents from the sandbox release mirror')
    print()
    print(f"| {'run':<26} | {'wall time':>9} | {'load':>5} | {'tasks/host':>10} | {'localhost':>9} | {'changed':>7} "
          f"| {'ARM requests':>12} | {'writes':>6} |")
    print(f"|{'-' * 28}|{'-' * 11}|{'-' * 7}|{'-' * 12}|{'-' * 11}|{'-' * 9}|{'-' * 14}|{'-' * 8}|")
    for r in rows:
        print(f"| {r['name']:<26} | {r['wall']:>8.1f}s | {r['load']:>5.1f} | {r['tasks']:>10} | {r['localhost']:>9} "
              f"| {r['changed']:>7} | {r['api']:>12} | {r['writes']:>6} |")
    reruns = sorted(r['wall'] for r in rows[1:])
    if len(reruns) > 1:
        print(f"\nre-run median: {statistics.median(reruns):.1f}s over {len(reruns)} runs")
    print()
    print('tasks/host: ok + skipped per instance (min-max) from the play recap; localhost: the provisioning play; '
          'load: the 1-minute load average when the run started (timings on a shared machine are noisy). '
          'The first run includes starting the emulator and the mirror and booting the instances.')


if __name__ == '__main__':
    main()

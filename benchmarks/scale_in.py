"""Benchmark: a scale-set instance deleted from outside Ansible (the plain Azure SDK, as the portal or
autoscale would), from the delete request until the instance is gone, split into the phases the on-instance
Scheduled Events service goes through: the event reaching the instance (request -> drain start), the Nomad
drain of N allocations, the Consul leave, and Azure's delete after the approval.

Boots its own sandbox (`scripts/sandbox.sh up`: 3 servers, pools west and north), then for each N adds a west
instance (playbooks/scale.yml), places N allocations on it, deletes it with the SDK and watches the Nomad node's
drain and the Consul member; `down` at the end. Needs root and systemd-nspawn; run under the hosts lock:

    flock /tmp/hashistack-hosts.lock .venv/bin/python benchmarks/scale_in.py [--allocs 0 4 8]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.e2e.cluster import compute_client, load_env, nomad_api, own_sandbox, playbook, stamp, table  # noqa: E402 (the e2e tests' helpers)

RG, WEST, JOB = 'hashistack-sandbox', 'sandbox-west', 'bench-scale-in'


def one(box: dict, allocs: int) -> dict:
    compute = compute_client(box['env'])
    before = {v.os_profile.computer_name for v in compute.virtual_machine_scale_set_vms.list(RG, WEST)}
    out = playbook(box, 'playbooks/scale.yml', '-e', 'pool=west', '-e', f'count={len(before) + 1}')
    if out.returncode:
        raise SystemExit(out.stdout[-4000:])
    vms = {v.os_profile.computer_name: v.instance_id for v in compute.virtual_machine_scale_set_vms.list(RG, WEST)}
    name = next(n for n in vms if n not in before)
    if allocs:
        nomad_api(box, '/v1/jobs', 'POST', {'Job': {
            'ID': JOB, 'Name': JOB, 'Type': 'service', 'Datacenters': ['westeurope'],
            'Constraints': [{'LTarget': '${node.unique.name}', 'RTarget': name, 'Operand': '='}],
            'TaskGroups': [{'Name': 'g', 'Count': allocs, 'Tasks': [{
                'Name': 't', 'Driver': 'exec', 'Config': {'command': '/bin/sleep', 'args': ['3600']},
                'Resources': {'CPU': 10, 'MemoryMB': 8}}]}]}})
        while len([a for a in nomad_api(box, f'/v1/job/{JOB}/allocations') if a['ClientStatus'] == 'running']) < allocs:
            time.sleep(1)
        # the allocations may only move once the node is gone: let them run anywhere in the pool
        job = nomad_api(box, f'/v1/job/{JOB}')
        job['Constraints'] = [{'LTarget': '${meta.hashistack_pool}', 'RTarget': 'west', 'Operand': '='}]
        nomad_api(box, '/v1/jobs', 'POST', {'Job': job})
    left = {}

    def watch():
        while 'gone' not in left:
            members = {m['Node']: m['Status'] for m in table(box['run']('consul', 'members').stdout, 'Node')}
            if members.get(name) == 'left' and 'left' not in left:
                left['left'] = time.time()
            time.sleep(0.5)
    t0 = time.time()
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    compute.virtual_machine_scale_sets.begin_delete_instances(RG, WEST, {'instanceIds': [vms[name]]}).result()
    left['gone'] = time.time()
    watcher.join()
    node = next(n for n in nomad_api(box, '/v1/nodes') if n['Name'] == name)
    drain = nomad_api(box, f"/v1/node/{node['ID']}").get('LastDrain') or {}
    start, end = stamp(drain.get('StartedAt')), stamp(drain.get('UpdatedAt'))
    if allocs:
        nomad_api(box, f'/v1/job/{JOB}?purge=true', 'DELETE')
    leave = left.get('left')
    return dict(allocs=allocs, total=left['gone'] - t0, notice=(start - t0) if start else None,
                drain=(end - start) if start and end else None, leave=(leave - end) if leave and end else None,
                delete=(left['gone'] - (leave or end or t0)))


def fmt(v):
    return f'{v:7.1f}s' if isinstance(v, float) else f"{'-':>8}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--allocs', type=int, nargs='+', default=[0, 4], help='allocations on the deleted client')
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix='bench-scale-in-') as state:
        box = own_sandbox(Path(state))
        try:
            box['run']('up')
            load_env(box)
            rows = [one(box, n) for n in args.allocs]
        finally:
            box['run']('down', check=False)
    print('A west client deleted with the Azure SDK (terminate notification 10 min) on the sandbox; '
          'the Scheduled Events service drains, leaves and approves')
    print()
    print(f"| {'allocations':>11} | {'request -> gone':>15} | {'event -> drain':>14} | {'drain':>8} | {'leave':>8} | {'Azure delete':>12} |")
    print(f"|{'-' * 13}|{'-' * 17}|{'-' * 16}|{'-' * 10}|{'-' * 10}|{'-' * 14}|")
    for r in rows:
        print(f"| {r['allocs']:>11} | {fmt(r['total']):>15} | {fmt(r['notice']):>14} | {fmt(r['drain'])} | {fmt(r['leave'])} "
              f"| {fmt(r['delete']):>12} |")
    print()
    print('event -> drain: the delete request until the node drain starts (the event reaching the instance, polled); '
          'drain: Nomad drain start to complete (LastDrain); leave: drain complete until the Consul member shows left '
          '(polled every 0.5 s); Azure delete: from the leave (approval) until the delete operation completes.')


if __name__ == '__main__':
    main()

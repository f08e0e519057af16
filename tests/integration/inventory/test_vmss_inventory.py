"""hashistack.azure.vmss against the ARM emulator, through `ansible-inventory` like a user runs it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from fleet import COLLECTIONS, QUOTAS, ROOT, Fleet, build_cluster, cluster_tags  # noqa: E402

RG = 'hs-inv'
EVIL = "{{ lookup('pipe', 'id') }}"
BIN = os.path.join(ROOT, '.venv', 'bin')

# requests that are not ARM API calls (token service, cloud metadata, admin API)
_NOT_ARM = re.compile(r'^/(_sandbox/|metadata/endpoints|[^/]+/(v2\.0/)?\.well-known/|[^/]+/oauth2/|[^/]+/discovery/)', re.I)


def requests_of(arm, since=0):
    return arm.requests(since)


def arm_calls(entries):
    return [e for e in entries if not _NOT_ARM.match(e['path'])]


def run_inventory(tmp_path, arm_env, config, *args, name='test', check=True, extra_env=None):
    path = tmp_path / f'{name}.vmss.yml'
    path.write_text(yaml.safe_dump(dict({'plugin': 'hashistack.azure.vmss'}, **config), sort_keys=False))
    env = dict(os.environ)
    env.update(arm_env)
    env.update({
        'ANSIBLE_COLLECTIONS_PATH': COLLECTIONS,
        'ANSIBLE_INVENTORY_ENABLED': 'hashistack.azure.vmss',
        'ANSIBLE_INVENTORY_UNPARSED_FAILED': 'true',
        'ANSIBLE_NOCOLOR': '1',
        'ANSIBLE_LOCAL_TEMP': str(tmp_path / 'tmp'),
        'PATH': BIN + os.pathsep + env.get('PATH', ''),
    })
    env.update(extra_env or {})
    cmd = [os.path.join(BIN, 'ansible-inventory'), '-i', str(path)] + list(args or ['--list'])
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f'ansible-inventory failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}')
    return proc


def unwrap(value):
    """ansible-inventory writes strings marked unsafe as {"__ansible_unsafe": "..."}; return plain values."""
    if isinstance(value, dict):
        if set(value) == {'__ansible_unsafe'}:
            return value['__ansible_unsafe']
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


def listing(proc):
    data = json.loads(proc.stdout)
    hostvars = unwrap(data.get('_meta', {}).get('hostvars', {}))

    def hosts(group):
        return sorted(data.get(group, {}).get('hosts', []))
    return data, hostvars, hosts


BASE = {'resource_groups': [RG], 'tags': {'hashistack_cluster': 'prod'}}


@pytest.fixture(scope='module')
def cluster(arm, arm_env):
    fleet = Fleet(arm_env)
    arm.set_quotas(QUOTAS)
    sets = build_cluster(fleet, RG)
    # a tag that must never be templated
    web = next(s for s in sets if s['name'] == 'hs-web')
    fleet.compute.virtual_machine_scale_sets.begin_update(RG, 'hs-web', {'tags': dict(web['tags'], owner=EVIL)}).result()
    yield fleet
    fleet.delete_resource_group(RG)
    fleet.close()


def test_groups_and_hostvars(cluster, arm, arm_env, tmp_path):
    proc = run_inventory(tmp_path, arm_env, BASE)
    data, hv, hosts = listing(proc)
    assert len(hv) == 10, hv.keys()            # 3 servers + 2 web + 3 batch + 2 edge; 'other' cluster left out
    servers = hosts('consul_servers')
    assert len(servers) == 3 and hosts('nomad_servers') == servers
    clients = hosts('consul_clients')
    assert len(clients) == 7 and hosts('nomad_clients') == clients
    assert not set(servers) & set(clients)
    assert len(hosts('pool_web')) == 2 and len(hosts('pool_batch')) == 3 and len(hosts('pool_edge')) == 2
    assert hosts('location_northeurope') == hosts('pool_batch')
    assert len(hosts('location_westeurope')) == 7
    assert not any(v['azure_vmss_name'] == 'other-app' for v in hv.values())

    for name, v in hv.items():
        assert v['ansible_host'] == v['azure_private_ip']
        assert re.match(r'^10\.(10|20)\.\d+\.\d+$', v['ansible_host']), (name, v['ansible_host'])
        assert v['azure_resource_group'].lower() == RG
        assert v['azure_power_state'] == 'running'
        assert v['consul_datacenter'] == 'dc1' and v['nomad_region'] == 'global'
        assert v['azure_cluster'] == 'prod'
        assert v['azure_subscription_id'] == arm_env.get('AZURE_SUBSCRIPTION_ID', v['azure_subscription_id'])
        assert v['azure_id'].lower().startswith('/subscriptions/')
        assert v['azure_vm_size'] == 'Standard_B1s'
    server = hv[servers[0]]
    assert server['hashistack_role'] == 'server' and server['azure_role'] == 'server'
    assert server['azure_orchestration_mode'] == 'Uniform' and server['azure_latest_model'] is True
    assert server['azure_location'] == 'westeurope'
    batch = hv[hosts('pool_batch')[0]]
    assert batch['nomad_datacenter'] == 'dc2' and batch['azure_location'] == 'northeurope'
    assert batch['ansible_host'].startswith('10.20.')
    # Flexible and Uniform together
    edge = [hv[h] for h in hosts('pool_edge')]
    assert {e['azure_orchestration_mode'] for e in edge} == {'Flexible'}
    assert all(e['ansible_host'].startswith('10.10.') for e in edge)
    assert all(e['azure_vmss_name'] == 'hs-edge' for e in edge)
    # distinct addresses for distinct instances
    assert len({v['ansible_host'] for v in hv.values()}) == 10


def test_graph(cluster, arm_env, tmp_path):
    proc = run_inventory(tmp_path, arm_env, BASE, '--graph')
    out = proc.stdout
    for group in ('@consul_servers:', '@consul_clients:', '@nomad_servers:', '@nomad_clients:', '@pool_web:',
                  '@pool_batch:', '@pool_edge:', '@location_westeurope:', '@location_northeurope:'):
        assert group in out, out
    servers = out.split('@consul_servers:')[1].split('@')[0]
    assert len(re.findall(r'\|--\S+', servers)) == 3, out
    proc = run_inventory(tmp_path, arm_env, BASE, '--graph', 'nomad_servers')
    assert proc.stdout.startswith('@nomad_servers:') and proc.stdout.count('|--') == 3


def test_request_count_is_constant_per_scale_set(cluster, arm, arm_env, tmp_path):
    config = dict(BASE, tags={'hashistack_pool': ['web', 'batch']})
    mark = arm.mark()
    run_inventory(tmp_path, arm_env, config)
    before = arm_calls(requests_of(arm, mark))
    # 1 listing of the resource group's scale sets + (VM list + NIC list) for each of the 2 selected sets
    assert len(before) == 5, [(e['method'], e['path']) for e in before]
    assert all(e['method'] == 'GET' for e in before)

    cluster.compute.virtual_machine_scale_sets.begin_update(RG, 'hs-web', {'sku': {'capacity': 12}}).result()
    try:
        mark = arm.mark()
        proc = run_inventory(tmp_path, arm_env, config)
        after = arm_calls(requests_of(arm, mark))
        assert len(listing(proc)[1]) == 15
        assert sorted(e['path'].lower() for e in after) == sorted(e['path'].lower() for e in before)
    finally:
        cluster.compute.virtual_machine_scale_sets.begin_update(RG, 'hs-web', {'sku': {'capacity': 2}}).result()


def test_flexible_calls_shared_per_resource_group(cluster, arm, arm_env, tmp_path):
    mark = arm.mark()
    run_inventory(tmp_path, arm_env, dict(BASE, tags={'hashistack_pool': 'edge'}))
    calls = [e['path'].lower() for e in arm_calls(requests_of(arm, mark))]
    assert len(calls) == 3, calls       # scale sets, the set's VMs (filtered), the resource group's NICs
    assert sum(c.endswith('/microsoft.compute/virtualmachines') for c in calls) == 1
    assert sum(c.endswith('/microsoft.network/networkinterfaces') for c in calls) == 1


def test_tag_with_template_stays_literal(cluster, arm_env, tmp_path):
    proc = run_inventory(tmp_path, arm_env, dict(BASE, compose={'owner': 'azure_vmss_tags.owner'}))
    data, hv, hosts = listing(proc)
    web = [hv[h] for h in hosts('pool_web')]
    assert web and all(v['azure_vmss_tags']['owner'] == EVIL and v['owner'] == EVIL for v in web)
    # and ansible-inventory reports them as unsafe
    raw = data['_meta']['hostvars'][hosts('pool_web')[0]]
    assert raw['azure_vmss_tags']['owner'] == {'__ansible_unsafe': EVIL}
    assert raw['owner'] == {'__ansible_unsafe': EVIL}

    inventory = tmp_path / 'test.vmss.yml'
    playbook = tmp_path / 'show.yml'
    playbook.write_text(yaml.safe_dump([{
        'hosts': 'pool_web', 'gather_facts': False, 'connection': 'local',
        'tasks': [{'name': 'show', 'ansible.builtin.debug': {'msg': 'owner=[{{ owner }}] tag=[{{ azure_vmss_tags.owner }}]'}}],
    }]))
    env = dict(os.environ)
    env.update(arm_env)
    env.update({'ANSIBLE_COLLECTIONS_PATH': COLLECTIONS, 'ANSIBLE_NOCOLOR': '1', 'ANSIBLE_LOCAL_TEMP': str(tmp_path / 'tmp'),
                'ANSIBLE_INVENTORY_ENABLED': 'hashistack.azure.vmss', 'PATH': BIN + os.pathsep + env.get('PATH', '')})
    play = subprocess.run([os.path.join(BIN, 'ansible-playbook'), '-i', str(inventory), str(playbook),
                           '-e', f'ansible_python_interpreter={sys.executable}'],
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    assert play.returncode == 0, play.stdout + play.stderr
    assert f'owner=[{EVIL}] tag=[{EVIL}]' in play.stdout
    assert 'uid=' not in play.stdout


def test_vmss_info_reads_like_the_inventory(cluster, arm, arm_env, tmp_path):
    """vmss_info and the inventory read scale sets the same way: the same requests, instances, addresses and power
    states, the same tag filter (names case-insensitive, a list is any of)."""
    tags = {'hashistack_pool': ['web', 'edge']}
    mark = arm.mark()
    hv = listing(run_inventory(tmp_path, arm_env, {'resource_groups': [RG], 'tags': tags}))[1]
    inventory_calls = sorted(e['path'].lower() for e in arm_calls(requests_of(arm, mark)))

    out = tmp_path / 'info.json'
    playbook = tmp_path / 'info.yml'
    playbook.write_text(yaml.safe_dump([{'hosts': 'localhost', 'gather_facts': False, 'connection': 'local', 'tasks': [
        {'name': 'read', 'register': 'r', 'hashistack.azure.vmss_info': {
            'resource_group': RG, 'tags': {'HASHISTACK_POOL': ['web', 'edge']}, 'include_instances': True}},
        {'name': 'save', 'ansible.builtin.copy': {'content': '{{ r | to_json }}', 'dest': str(out), 'mode': '0600'}}]}]))
    env = dict(os.environ)
    env.update(arm_env)
    env.update({'ANSIBLE_COLLECTIONS_PATH': COLLECTIONS, 'ANSIBLE_NOCOLOR': '1', 'ANSIBLE_LOCAL_TEMP': str(tmp_path / 'tmp'),
                'PATH': BIN + os.pathsep + env.get('PATH', '')})
    mark = arm.mark()
    play = subprocess.run([os.path.join(BIN, 'ansible-playbook'), '-i', 'localhost,', str(playbook),
                           '-e', f'ansible_python_interpreter={sys.executable}'],
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    assert play.returncode == 0, play.stdout + play.stderr
    info_calls = arm_calls(requests_of(arm, mark))
    assert all(e['method'] == 'GET' for e in info_calls)
    assert sorted(e['path'].lower() for e in info_calls) == inventory_calls

    info = json.loads(out.read_text())
    assert sorted(s['name'] for s in info['scale_sets']) == ['hs-edge', 'hs-web']
    instances = {i['id'].lower(): i for s in info['scale_sets'] for i in s['instances']}
    hosts = {v['azure_id'].lower(): v for v in hv.values()}
    assert len(instances) == 4 and set(instances) == set(hosts)
    for vm_id, inst in instances.items():
        host = hosts[vm_id]
        assert inst['private_ip'] and inst['private_ip'] == host['azure_private_ip'], vm_id
        assert inst['power_state'] == host['azure_power_state'] == 'running'
        assert inst['instance_id'] == host['azure_instance_id'] and inst['computer_name'] == host['azure_computer_name']
        assert inst['orchestration_mode'] == host['azure_orchestration_mode']
        assert inst['latest_model_applied'] == host['azure_latest_model']


def test_throttling_is_survived(cluster, arm, arm_env, tmp_path):
    arm.fault(method='GET', path=r'/virtualMachineScaleSets/hs-servers/virtualMachines$', status=429, count=2, retry_after=1)
    arm.fault(method='GET', path=r'/virtualMachineScaleSets/hs-web/networkInterfaces$', status=429, count=1, retry_after=1)
    mark = arm.mark()
    proc = run_inventory(tmp_path, arm_env, BASE)
    _data, hv, hosts = listing(proc)
    assert len(hv) == 10 and len(hosts('consul_servers')) == 3
    statuses = [e['status'] for e in arm_calls(requests_of(arm, mark))]
    assert statuses.count(429) == 3


def test_cache_hit_makes_no_request(cluster, arm, arm_env, tmp_path):
    config = dict(BASE, cache=True, cache_plugin='ansible.builtin.jsonfile', cache_connection=str(tmp_path / 'cache'))
    first = listing(run_inventory(tmp_path, arm_env, config))[1]
    mark = arm.mark()
    second_proc = run_inventory(tmp_path, arm_env, dict(config, keyed_groups=[{'key': 'azure_vmss_name', 'prefix': 'vmss'}]))
    # not even a token or cloud metadata request (only the test's own admin API calls are logged)
    assert [e for e in requests_of(arm, mark) if not e['path'].startswith('/_sandbox/')] == []
    _data, second, hosts = listing(second_proc)
    assert sorted(second) == sorted(first)
    assert len(hosts('vmss_hs_servers')) == 3  # groups rebuilt from the cached API results
    # --flush-cache refreshes from Azure
    mark = arm.mark()
    run_inventory(tmp_path, arm_env, config, '--list', '--flush-cache')
    assert arm_calls(requests_of(arm, mark))


def test_deleted_scale_set_during_listing_is_skipped(cluster, arm, arm_env, tmp_path):
    arm.fault(method='GET', path=r'/virtualMachineScaleSets/hs-web/virtualMachines$', status=404, count=1,
              code='ResourceNotFound',
              message="The Resource 'Microsoft.Compute/virtualMachineScaleSets/hs-web' under resource group 'hs-inv' was not found.")
    proc = run_inventory(tmp_path, arm_env, BASE)
    _data, hv, hosts = listing(proc)
    assert len(hv) == 8 and hosts('pool_web') == []
    assert 'hs-web' in proc.stderr and 'deleted' in proc.stderr


def test_server_error_fails_instead_of_partial_inventory(cluster, arm, arm_env, tmp_path):
    arm.fault(method='GET', path=r'/virtualMachineScaleSets/hs-servers/networkInterfaces$', status=400, count=1,
              code='BadRequest', message='synthetic failure')
    proc = run_inventory(tmp_path, arm_env, BASE, check=False)
    assert proc.returncode != 0
    assert 'hs-servers' in proc.stderr and 'synthetic failure' in proc.stderr


def test_subscription_without_access(cluster, arm, arm_env, tmp_path):
    sub = arm_env['AZURE_SUBSCRIPTION_ID']
    other = '11111111-2222-3333-4444-555555555555'
    arm.fault(method='GET', path=rf'/subscriptions/{other}/', status=403, count=1, code='AuthorizationFailed',
              message=f"The client does not have authorization to perform action "
                      f"'Microsoft.Compute/virtualMachineScaleSets/read' over scope '/subscriptions/{other}'.")
    proc = run_inventory(tmp_path, arm_env, dict(BASE, subscriptions=[sub, other]))
    assert len(listing(proc)[1]) == 10
    assert other in proc.stderr
    # only an unreadable subscription: a clear failure, not an empty inventory
    arm.fault(method='GET', path=rf'/subscriptions/{other}/', status=403, count=1, code='AuthorizationFailed',
              message='The client does not have authorization.')
    proc = run_inventory(tmp_path, arm_env, dict(BASE, subscriptions=[other]), check=False)
    assert proc.returncode != 0 and 'None of the subscriptions' in proc.stderr
    # strict_permissions turns the warning into a failure
    arm.fault(method='GET', path=rf'/subscriptions/{other}/', status=403, count=1, code='AuthorizationFailed',
              message='The client does not have authorization.')
    proc = run_inventory(tmp_path, arm_env, dict(BASE, subscriptions=[sub, other], strict_permissions=True), check=False)
    assert proc.returncode != 0 and 'Permission denied' in proc.stderr
    arm.clear_faults()


def test_missing_credentials(arm_env, tmp_path):
    env = {k: '' for k in ('AZURE_CLIENT_ID', 'AZURE_SECRET', 'AZURE_CLIENT_SECRET', 'AZURE_TENANT', 'AZURE_TENANT_ID',
                           'ARM_CLIENT_ID', 'ARM_CLIENT_SECRET', 'ARM_TENANT_ID')}
    proc = run_inventory(tmp_path, arm_env, dict(BASE, auth_source='env'), check=False, extra_env=env)
    assert proc.returncode != 0
    assert 'AZURE_CLIENT_ID' in proc.stderr and 'auth_source=env' in proc.stderr


@pytest.fixture(scope='module')
def small_pages():
    """A second emulator that pages every list after 4 items."""
    from sandbox.arm.testing import ArmEmulator
    emulator = ArmEmulator(provisioning_seconds=0.05, page_size=4).start()
    yield emulator
    emulator.cleanup()


@pytest.mark.slow
def test_paging_more_instances_than_a_page(small_pages, tmp_path):
    arm, env = small_pages, small_pages.env()
    fleet = Fleet(env)
    rg = 'hs-inv-paging'
    sizes = {'p-a': 6, 'p-b': 9, 'p-c': 1, 'p-d': 1}
    try:
        arm.set_quotas(QUOTAS)
        fleet.resource_group(rg, 'eastus')
        subnet = fleet.subnet(rg, 'eastus', '10.30.0.0/16')
        specs = [dict(name=name, location='eastus', capacity=n, subnet_id=subnet,
                      tags=cluster_tags('paging', 'client', name)) for name, n in sizes.items()]
        specs.append(dict(name='p-flex', location='eastus', capacity=5, subnet_id=subnet, mode='Flexible',
                          tags=cluster_tags('paging', 'client', 'p-flex')))
        fleet.create_scale_sets(rg, specs)
        mark = arm.mark()
        proc = run_inventory(tmp_path, env, {'resource_groups': [rg]})
        _data, hv, hosts = listing(proc)
        assert len(hv) == 22
        for name, n in dict(sizes, **{'p-flex': 5}).items():
            assert len(hosts(f'pool_{name.replace("-", "_")}')) == n
        assert len({v['ansible_host'] for v in hv.values()}) == 22
        calls = arm_calls(requests_of(arm, mark))
        per_path = {}
        for e in calls:
            per_path[e['path'].lower()] = per_path.get(e['path'].lower(), 0) + 1
        base = f"/subscriptions/{env['AZURE_SUBSCRIPTION_ID']}/resourcegroups/{rg}/providers".lower()
        expected = {f'{base}/microsoft.compute/virtualmachinescalesets': 2,      # 5 scale sets, 4 per page
                    f'{base}/microsoft.compute/virtualmachines': 2,              # 5 Flexible VMs
                    f'{base}/microsoft.network/networkinterfaces': 2}            # their 5 NICs
        for name, n in sizes.items():
            pages = -(-n // 4)
            expected[f'{base}/microsoft.compute/virtualmachinescalesets/{name}/virtualmachines'] = pages
            expected[f'{base}/microsoft.compute/virtualmachinescalesets/{name}/networkinterfaces'] = pages
        assert per_path == expected
    finally:
        fleet.delete_resource_group(rg)
        fleet.close()

"""Unit tests for the hashistack.azure.vmss inventory plugin on canned ARM data (no emulator)."""

from __future__ import annotations

import copy
import os
import sys
import threading
import warnings

import pytest
from azure.core.exceptions import HttpResponseError

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, '..', '..', '..', '..'))
COLLECTIONS = os.path.join(ROOT, '.cache', 'collections')
sys.path.insert(0, HERE)

from ansible.plugins.loader import init_plugin_loader  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter('ignore')  # another test module may have configured the loader already
    init_plugin_loader([COLLECTIONS])

import canned  # noqa: E402
from ansible.inventory.manager import InventoryManager  # noqa: E402
from ansible.parsing.dataloader import DataLoader  # noqa: E402
from ansible_collections.hashistack.azure.plugins.inventory import vmss  # noqa: E402
from ansible_collections.hashistack.azure.plugins.module_utils import _ids, _vmss_readers  # noqa: E402


class FakeHttpError(HttpResponseError):
    def __init__(self, status, message='boom'):
        super().__init__(message=message)
        self.status_code = status


@pytest.fixture
def build(tmp_path, monkeypatch):
    """Build an inventory from a config (dict) and canned raw data; returns the InventoryManager."""

    def _build(config, raw=None):
        raw = canned.cluster_raw() if raw is None else raw
        calls = []

        def fake_fetch(self):
            calls.append(1)
            return copy.deepcopy(raw)

        monkeypatch.setattr(vmss.InventoryModule, '_fetch', fake_fetch)
        import yaml
        path = tmp_path / 'test.vmss.yml'
        path.write_text(yaml.safe_dump(dict({'plugin': 'hashistack.azure.vmss'}, **config)))
        manager = InventoryManager(DataLoader(), sources=[str(path)])
        manager.fetch_calls = calls
        return manager

    return _build


def members(manager, group):
    return sorted(h.name for h in manager.groups[group].get_hosts()) if group in manager.groups else None


def test_default_groups(build):
    inv = build({})
    assert members(inv, 'consul_servers') == ['hs-server-0', 'hs-server-1', 'hs-server-2']
    assert members(inv, 'nomad_servers') == ['hs-server-0', 'hs-server-1', 'hs-server-2']
    clients = ['hs-batch-0', 'hs-batch-1', 'hs-edge-a', 'hs-edge-b', 'hs-web-0', 'hs-web-1']
    assert members(inv, 'consul_clients') == clients
    assert members(inv, 'nomad_clients') == clients
    assert members(inv, 'pool_web') == ['hs-web-0', 'hs-web-1']
    assert members(inv, 'pool_batch') == ['hs-batch-0', 'hs-batch-1']
    assert members(inv, 'pool_edge_pool') == ['hs-edge-a', 'hs-edge-b']   # sanitized
    assert members(inv, 'location_northeurope') == ['hs-batch-0', 'hs-batch-1']
    assert len(inv.groups['location_westeurope'].get_hosts()) == 7
    # the VM without a scale set in the same resource group is not part of the inventory
    assert 'standalone' not in inv.hosts


def test_uniform_hostvars(build):
    inv = build({})
    hv = inv.get_host('hs-server-1').get_vars()
    assert hv['ansible_host'] == '10.0.1.5'
    assert hv['azure_private_ip'] == '10.0.1.5'
    assert hv['azure_private_ips'] == ['10.0.1.5']
    assert hv['azure_public_ip'] is None
    assert hv['azure_instance_id'] == '1'
    assert hv['azure_name'] == 'hs-servers_1'
    assert hv['azure_vmss_name'] == 'hs-servers'
    assert hv['azure_vmss_id'].endswith('/virtualMachineScaleSets/hs-servers')
    assert hv['azure_orchestration_mode'] == 'Uniform'
    assert hv['azure_resource_group'] == canned.RG
    assert hv['azure_subscription_id'] == canned.SUB
    assert hv['azure_location'] == 'westeurope'
    assert hv['azure_zone'] == '2'
    assert hv['azure_vm_size'] == 'Standard_D2s_v3'
    assert hv['azure_power_state'] == 'running'
    assert hv['azure_provisioning_state'] == 'Succeeded'
    assert hv['azure_latest_model'] is True
    assert hv['azure_role'] == 'server' and hv['hashistack_role'] == 'server'
    assert hv['azure_pool'] == 'servers' and hv['hashistack_pool'] == 'servers'
    assert hv['consul_datacenter'] == 'dc1' and hv['azure_consul_datacenter'] == 'dc1'
    assert hv['nomad_region'] == 'global' and hv['nomad_datacenter'] == 'dc1'
    assert hv['azure_vmss_tags']['hashistack_cluster'] == 'prod'
    # the cluster name is azure_cluster only: hashistack_cluster is the roles' normalized cluster fact
    assert hv['azure_cluster'] == 'prod' and 'hashistack_cluster' not in hv
    assert inv.get_host('hs-web-1').get_vars()['azure_latest_model'] is False
    assert inv.get_host('hs-batch-0').get_vars()['nomad_datacenter'] == 'dc2'


def test_flexible_hostvars(build):
    inv = build({})
    a = inv.get_host('hs-edge-a').get_vars()
    assert a['azure_orchestration_mode'] == 'Flexible'
    assert a['azure_instance_id'] == 'hs-edge_a1b2c3'
    assert a['azure_vm_size'] == 'Standard_B2s'
    assert a['azure_private_ip'] == '10.0.3.4'
    assert a['azure_latest_model'] is None
    # NIC without virtualMachine back-reference: matched through the VM's networkProfile
    assert inv.get_host('hs-edge-b').get_vars()['ansible_host'] == '10.0.3.5'


def test_power_state_filters(build):
    inv = build({'exclude_power_states': ['deallocated']})
    assert 'hs-batch-1' not in inv.hosts and 'hs-batch-0' in inv.hosts
    inv = build({'include_power_states': ['deallocated']})
    assert sorted(inv.hosts) == ['hs-batch-1']


def test_use_public_ip(build):
    inv = build({'use_public_ip': True})
    assert inv.get_host('hs-batch-0').get_vars()['ansible_host'] == '20.1.2.3'
    # no public IP: private address kept
    assert inv.get_host('hs-batch-1').get_vars()['ansible_host'] == '10.1.2.5'


def test_hostnames_choices_and_expression(build):
    inv = build({'hostnames': ['name']})
    assert 'hs-servers_0' in inv.hosts and 'hs-edge_a1b2c3' in inv.hosts
    inv = build({'hostnames': ['private_ip']})
    assert '10.0.1.4' in inv.hosts
    inv = build({'hostnames': ["azure_vmss_name ~ '-' ~ azure_instance_id"]})
    assert 'hs-servers-2' in inv.hosts
    # collisions: instance_id is not unique across scale sets -> next entry is used
    inv = build({'hostnames': ['instance_id', 'vmss_instance']})
    assert '0' in inv.hosts and 'hs-web_0' in inv.hosts and len(inv.hosts) == 9


def test_constructed_features(build):
    inv = build({
        'default_groups': False,
        'keyed_groups': [{'key': 'azure_vmss_name', 'prefix': 'vmss'}, {'key': 'azure_zone', 'prefix': 'zone'}],
        'groups': {'outdated': 'azure_latest_model == false'},
        'compose': {'ansible_user': "'azureuser'", 'dc_and_pool': "nomad_datacenter ~ '/' ~ hashistack_pool"},
    })
    assert 'consul_servers' not in inv.groups
    assert members(inv, 'vmss_hs_web') == ['hs-web-0', 'hs-web-1']
    assert members(inv, 'zone_3') == ['hs-server-2']
    assert members(inv, 'outdated') == ['hs-web-1']
    hv = inv.get_host('hs-batch-0').get_vars()
    assert hv['ansible_user'] == 'azureuser'
    assert hv['dc_and_pool'] == 'dc2/batch'


def test_strict_fails_on_bad_compose(build, tmp_path, monkeypatch):
    from ansible.errors import AnsibleError
    from ansible.inventory.data import InventoryData
    from ansible.plugins.loader import inventory_loader
    lenient = build({'compose': {'x': 'no_such_var.attr'}})
    assert 'hs-server-0' in lenient.hosts and 'x' not in lenient.get_host('hs-server-0').get_vars()
    build({})  # installs the fake fetch
    path = tmp_path / 'strict.vmss.yml'
    path.write_text("plugin: hashistack.azure.vmss\nstrict: true\ncompose:\n  x: no_such_var.attr\n")
    plugin = inventory_loader.get('hashistack.azure.vmss')
    with pytest.raises(AnsibleError, match='Could not set x'):
        plugin.parse(InventoryData(), DataLoader(), str(path), cache=False)


def test_tags_stay_literal(build):
    raw = canned.cluster_raw()
    evil = "{{ lookup('pipe', 'id') }}"
    raw['scale_sets'][0]['scale_set']['tags']['owner'] = evil
    raw['scale_sets'][0]['scale_set']['tags']['hashistack_pool'] = evil
    inv = build({'compose': {'owner': "azure_vmss_tags.owner"}}, raw)
    hv = inv.get_host('hs-server-0').get_vars()
    assert hv['azure_vmss_tags']['owner'] == evil
    assert hv['owner'] == evil
    assert hv['hashistack_pool'] == evil
    from ansible.template import Templar, trust_as_template
    templar = Templar(loader=DataLoader(), variables=hv)
    assert templar.template(trust_as_template('{{ owner }}')) == evil
    assert templar.template(trust_as_template('{{ azure_vmss_tags.owner }}')) == evil
    assert templar.template(trust_as_template('{{ hashistack_pool }}')) == evil


def test_cluster_tags_fall_back_to_instance_tags(build):
    raw = canned.cluster_raw()
    entry = raw['scale_sets'][1]    # web
    entry['scale_set']['tags'] = {'hashistack_cluster': 'prod'}
    for vm in entry['instances']:
        vm['tags'] = {'hashistack_role': 'client', 'hashistack_pool': 'web'}
    inv = build({}, raw)
    hv = inv.get_host('hs-web-0').get_vars()
    assert hv['hashistack_role'] == 'client' and hv['azure_cluster'] == 'prod'
    assert 'consul_datacenter' not in hv and hv['azure_consul_datacenter'] is None


def test_no_role_is_consul_client_only(build):
    raw = canned.cluster_raw()
    raw['scale_sets'][1]['scale_set']['tags'].pop('hashistack_role')
    for vm in raw['scale_sets'][1]['instances']:
        vm['tags'] = {}
    inv = build({}, raw)
    assert 'hs-web-0' in members(inv, 'consul_clients')
    assert 'hs-web-0' not in members(inv, 'nomad_clients')
    assert 'hashistack_role' not in inv.get_host('hs-web-0').get_vars()


def test_cache_serves_second_load(build, tmp_path):
    config = {'cache': True, 'cache_plugin': 'ansible.builtin.jsonfile', 'cache_connection': str(tmp_path / 'cache')}
    first = build(config)
    assert first.fetch_calls == [1]
    second = build(dict(config, keyed_groups=[{'key': 'azure_vmss_name', 'prefix': 'vmss'}]))
    assert second.fetch_calls == []           # served from cache, groups rebuilt with the new options
    assert members(second, 'vmss_hs_web') == ['hs-web-0', 'hs-web-1']
    third = build(dict(config, tags={'hashistack_cluster': 'other'}))
    assert third.fetch_calls == [1]           # fetch-affecting options change the cache key


# ---------------------------------------------------------------------------------------------- pure helpers

def test_helpers():
    assert _vmss_readers.tags_match({'Hashistack_Cluster': 'prod'}, {'hashistack_cluster': 'prod'})
    assert not _vmss_readers.tags_match({'hashistack_cluster': 'Prod'}, {'hashistack_cluster': 'prod'})
    assert _vmss_readers.tags_match({'a': 'x'}, {'a': ['y', 'x']})
    assert _vmss_readers.tags_match({'a': ''}, {'a': None})
    assert not _vmss_readers.tags_match({}, {'a': None})
    assert _vmss_readers.power_state({'properties': {}}) == 'unknown'
    ids = _ids.parse_resource_id('/subscriptions/s/resourceGroups/RG/providers/x/y/z')
    assert (ids['subscription'], ids['resource_group']) == ('s', 'RG')
    assert vmss.default_group_names({'azure_role': 'Server', 'azure_location': 'eastus'}) == [
        'consul_servers', 'nomad_servers', 'location_eastus']


# ---------------------------------------------------------------------------------------------- fetch plan

class FakeSession:
    """Answers the fetcher's ARM list requests from canned data and records them."""

    def __init__(self, raw, failures=None):
        self.raw = raw
        self.failures = failures or {}
        self.calls = []
        self.lock = threading.Lock()

    def prepare(self, sub):
        pass

    def retry(self, fn):
        return fn()

    def entry(self, name):
        return next(e for e in self.raw['scale_sets'] if e['scale_set']['name'] == name)

    def list_pages(self, sub, path, params):
        parts = path.split('/')
        lowered = path.lower()
        if lowered.endswith('/providers/microsoft.compute/virtualmachinescalesets'):
            key = ('list_all',) if '/resourcegroups/' not in lowered else ('list_rg', parts[4])
            items = [e['scale_set'] for e in self.raw['scale_sets']]
        elif lowered.endswith('/virtualmachines') and '/virtualmachinescalesets/' in lowered:
            assert params['$expand'] == 'instanceView'
            key = ('vmss_vms', parts[-2])
            items = self.entry(parts[-2])['instances']
        elif lowered.endswith('/microsoft.compute/virtualmachines'):
            assert params['$expand'] == 'instanceView'
            name = params['$filter'].rsplit('/', 1)[1].rstrip("'")
            key = ('flex_vms', name)
            items = self.entry(name)['instances']
        elif lowered.endswith('/networkinterfaces') and '/virtualmachinescalesets/' in lowered:
            key = ('vmss_nics', parts[-2])
            items = self.raw['network']['vmss:' + self.entry(parts[-2])['scale_set']['id'].lower()]['nics']
        elif lowered.endswith('/microsoft.network/networkinterfaces'):
            key = ('rg_nics', parts[4])
            items = self.raw['network'].get(f'rg:{sub}/{parts[4]}'.lower(), {}).get('nics', [])
        elif lowered.endswith('/publicipaddresses'):
            key = ('pips', parts[-2])
            items = []
        else:
            raise AssertionError(path)
        with self.lock:
            self.calls.append(key)
        if key in self.failures:
            raise self.failures[key]
        return copy.deepcopy(items)


def _fetch(session, **kwargs):
    warnings = []
    fetcher = vmss.Fetcher(session, warn=warnings.append, **kwargs)
    return fetcher.fetch([canned.SUB]), warnings


def test_fetch_plan_constant_calls():
    raw = canned.cluster_raw()
    session = FakeSession(raw)
    result, warnings = _fetch(session)
    names = sorted(c[0] for c in session.calls)
    # 1 scale-set listing, per Uniform set 1 VM list + 1 NIC list, per Flexible set 1 VM list, per RG 1 NIC list
    assert names == sorted(['list_all'] + ['vmss_vms'] * 3 + ['vmss_nics'] * 3 + ['flex_vms'] + ['rg_nics'])
    assert warnings == []
    assert [e['scale_set']['name'] for e in result['scale_sets']] == ['hs-batch', 'hs-edge', 'hs-servers', 'hs-web']
    hosts = [vmss.instance_hostvars(s, i, n, sub)['azure_computer_name'] for s, i, n, sub in vmss.iter_instances(result)]
    assert len(hosts) == 9


def test_fetch_plan_does_not_grow_with_instances():
    raw = canned.cluster_raw()
    web = raw['scale_sets'][1]
    web['instances'] = [canned.uniform_vm(web['scale_set'], i, f'hs-web-{i}') for i in range(300)]
    session = FakeSession(raw)
    _fetch(session)
    assert len(session.calls) == 9


def test_fetch_tag_and_name_filters():
    raw = canned.cluster_raw()
    raw['scale_sets'][0]['scale_set']['tags']['hashistack_cluster'] = 'staging'
    session = FakeSession(raw)
    result, _w = _fetch(session, tag_filters={'hashistack_cluster': 'prod'}, scale_set_patterns=['hs-*'])
    assert 'hs-servers' not in [e['scale_set']['name'] for e in result['scale_sets']]
    assert not any(c[1:] == ('hs-servers',) for c in session.calls)   # filtered sets are never fetched


def test_fetch_deleted_scale_set_is_skipped_with_warning():
    raw = canned.cluster_raw()
    session = FakeSession(raw, failures={('vmss_vms', 'hs-web'): FakeHttpError(404, 'ResourceNotFound')})
    result, warnings = _fetch(session)
    assert 'hs-web' not in [e['scale_set']['name'] for e in result['scale_sets']]
    assert len(result['scale_sets']) == 3
    assert any('hs-web' in w and 'deleted' in w for w in warnings)


def test_fetch_other_errors_fail_naming_the_resource():
    raw = canned.cluster_raw()
    session = FakeSession(raw, failures={('vmss_nics', 'hs-web'): FakeHttpError(500, 'InternalServerError')})
    with pytest.raises(vmss.AnsibleError, match='hs-web'):
        _fetch(session)


def test_fetch_forbidden_subscription():
    raw = canned.cluster_raw()
    session = FakeSession(raw, failures={('list_all',): FakeHttpError(403, 'AuthorizationFailed')})
    with pytest.raises(vmss.AnsibleError, match='None of the subscriptions'):
        _fetch(session)


def test_fetch_forbidden_resource_group_warns_or_fails():
    raw = canned.cluster_raw()
    session = FakeSession(raw, failures={('list_rg', 'locked'): FakeHttpError(403, 'AuthorizationFailed')})
    result, warnings = _fetch(session, resource_groups=[canned.RG, 'locked'])
    assert len(result['scale_sets']) == 4
    assert any('locked' in w for w in warnings)
    session = FakeSession(raw, failures={('list_rg', 'locked'): FakeHttpError(403, 'AuthorizationFailed')})
    with pytest.raises(vmss.AnsibleError, match='strict_permissions'):
        _fetch(session, resource_groups=[canned.RG, 'locked'], strict_permissions=True)


def test_fetch_vanished_resource_group_of_flexible_sets():
    raw = canned.cluster_raw()
    session = FakeSession(raw, failures={('rg_nics', canned.RG): FakeHttpError(404, 'ResourceGroupNotFound')})
    result, warnings = _fetch(session)
    assert [e['scale_set']['name'] for e in result['scale_sets']] == ['hs-batch', 'hs-servers', 'hs-web']
    assert any('hs-edge' in w for w in warnings)

"""Unit tests for model comparison, diff, CIDR validation and scale set model helpers."""

from __future__ import annotations

import base64
import copy
import hashlib

from ansible_collections.hashistack.azure.plugins.module_utils import _diff, _ids, _network, _vmss, _vmss_readers

SUBNET = '/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v/subnets/servers'
KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGh9Vb7d8x0e7s9kq5V2t1b8pQz0m0Jr9ZyN0aXGk1Ql user@host'


# ------------------------------------------------------------------ _diff

def test_values_equal_kinds():
    assert _diff.values_equal(None, 'anything')
    assert _diff.values_equal(['b', 'a'], ['a', 'b'], 'set')
    assert not _diff.values_equal(['b', 'a'], ['a', 'b'])
    assert _diff.values_equal('Manual', 'manual', 'ci')
    assert _diff.values_equal({'a': '1'}, {'a': '1', 'b': '2'}, 'subset')
    assert not _diff.values_equal({'a': '1'}, {'a': '1', 'b': '2'}, 'dict')
    assert _diff.values_equal({'x': {'b': 1, 'a': 2}}, {'x': {'a': 2, 'b': 1}})


def test_model_diff_records_only_changes():
    d = _diff.ModelDiff({'capacity': 3, 'tags': {'a': '1'}, 'zones': ['1', '2']})
    assert not d.compare('zones', ['2', '1'], 'set')
    assert d.compare('capacity', 5)
    assert d.compare('tags', {'b': '2'}, 'subset')
    assert d.changed and d.changed_keys == ['capacity', 'tags']
    assert d.diff['before']['capacity'] == 3 and d.diff['after']['capacity'] == 5
    assert d.after['tags'] == {'a': '1', 'b': '2'}
    assert d.changes[0] == 'capacity: 3 -> 5'


def test_model_diff_unchanged_and_purge_tags():
    d = _diff.ModelDiff({'tags': {'a': '1', 'b': '2'}})
    d.compare('tags', {'a': '1'}, 'subset')
    assert not d.changed
    d.compare('tags', {'a': '1'}, 'dict', merge=lambda w, h: _diff.merge_tags(w, h, True))
    assert d.changed and d.after['tags'] == {'a': '1'}


# ------------------------------------------------------------------ _network

def test_validate_prefix():
    assert _network.validate_prefix('10.0.0.0/16', 'x') == '10.0.0.0/16'
    for bad, text in (('10.0.0.1/16', 'host bits set; the network is 10.0.0.0/16'), ('10.0.0.0', 'not a CIDR prefix'),
                      ('10.0.0.300/24', 'not a valid CIDR'), ('10.0.0.0/33', 'not a valid CIDR')):
        try:
            _network.validate_prefix(bad, 'address_prefixes')
        except ValueError as exc:
            assert text in str(exc), (bad, str(exc))
        else:
            raise AssertionError(f'{bad} accepted')


def test_validate_address_space_reports_every_problem():
    errors = _network.validate_address_space(
        ['10.0.0.0/16', '10.0.128.0/17'],
        [dict(name='a', address_prefix='10.0.1.0/24'), dict(name='b', address_prefix='10.0.1.128/25'),
         dict(name='c', address_prefix='192.168.0.0/24'), dict(name='a', address_prefix='10.0.9.0/24')])
    joined = ' | '.join(errors)
    assert 'address_prefixes: 10.0.0.0/16 and 10.0.128.0/17 overlap' in joined
    assert 'subnets a (10.0.1.0/24) and b (10.0.1.128/25) overlap' in joined
    assert 'subnet c: 192.168.0.0/24 is outside the address space' in joined
    assert 'name a is used twice' in joined


def test_validate_address_space_ok():
    assert _network.validate_address_space(['10.0.0.0/16'], [dict(name='a', address_prefix='10.0.1.0/24'),
                                                             dict(name='b', address_prefix='10.0.2.0/23')]) == []


def test_nsg_id_and_same_id():
    assert _network.nsg_id('n', 's', 'rg') == '/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/n'
    assert _ids.same_id('/A/b/', '/a/B')


# ------------------------------------------------------------------ _vmss

def params(**kw):
    p = dict(name='servers', location=None, vm_size='Standard_D2s_v3', capacity=3, image='Canonical:ubuntu:22_04-lts:latest',
             zones=None, subnet_id=SUBNET, network_security_group=None, admin_username=None, computer_name_prefix=None,
             ssh_public_keys=[KEY], custom_data='#cloud-config\n', tags={'role': 'server'}, identity='SystemAssigned',
             upgrade_policy=None, overprovision=None, orchestration_mode=None, platform_fault_domain_count=None,
             os_disk_type=None, os_disk_size_gb=None)
    p.update(kw)
    return p


def created_rest(**kw):
    desired = _vmss.desired_from_params(params(**kw))
    desired.update(location='westeurope', orchestration_mode='Uniform', upgrade_policy='Manual', overprovision=False,
                   os_disk_type='Standard_LRS', admin_username='azureuser', computer_name_prefix='servers')
    body = _vmss.create_body(desired, params(**kw)['custom_data'])
    rest = copy.deepcopy(body)
    rest.update(id='/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachineScaleSets/servers', name='servers')
    rest['properties']['provisioningState'] = 'Succeeded'
    rest['properties']['virtualMachineProfile']['osProfile'].pop('customData')  # Azure never returns it
    rest['identity'] = dict(type='SystemAssigned', principalId='p-1')
    return body, rest


def test_create_body_shape():
    body, _rest = created_rest()
    assert body['sku'] == {'name': 'Standard_D2s_v3', 'tier': 'Standard', 'capacity': 3}
    os_profile = body['properties']['virtualMachineProfile']['osProfile']
    assert base64.b64decode(os_profile['customData']).decode() == '#cloud-config\n'
    assert body['tags'][_vmss.CUSTOM_DATA_TAG] == hashlib.sha256(b'#cloud-config\n').hexdigest()
    assert os_profile['linuxConfiguration']['disablePasswordAuthentication'] is True
    assert body['properties']['overprovision'] is False
    assert body['identity'] == {'type': 'SystemAssigned'}
    ipconf = body['properties']['virtualMachineProfile']['networkProfile']['networkInterfaceConfigurations'][0]['properties']['ipConfigurations'][0]
    assert ipconf['properties']['subnet']['id'] == SUBNET


def test_same_params_compare_equal_after_roundtrip():
    _body, rest = created_rest()
    current = _vmss.model_from_rest(rest)
    assert current['tags'] == {'role': 'server'} and current['principal_id'] == 'p-1'
    d, errors = _vmss.compare(current, _vmss.desired_from_params(params()))
    assert errors == [] and not d.changed, d.changes


def test_capacity_and_custom_data_changes_make_a_minimal_patch():
    _body, rest = created_rest()
    current = _vmss.model_from_rest(rest)
    d, errors = _vmss.compare(current, _vmss.desired_from_params(params(capacity=5, custom_data='#cloud-config\nx: 1\n')))
    assert not errors
    assert set(d.changed_keys) == {'capacity', 'custom_data_sha256'}
    patch = _vmss.patch_body(d.after, d.changed_keys, '#cloud-config\nx: 1\n')
    assert patch['sku']['capacity'] == 5
    assert base64.b64decode(patch['properties']['virtualMachineProfile']['osProfile']['customData']) == b'#cloud-config\nx: 1\n'
    assert patch['tags'] == {'role': 'server', _vmss.CUSTOM_DATA_TAG: hashlib.sha256(b'#cloud-config\nx: 1\n').hexdigest()}
    assert 'storageProfile' not in patch['properties']['virtualMachineProfile']


def test_immutable_fields_are_refused():
    _body, rest = created_rest()
    current = _vmss.model_from_rest(rest)
    _d, errors = _vmss.compare(current, _vmss.desired_from_params(params(location='eastus', admin_username='root', zones=['1'])))
    text = ' | '.join(errors)
    assert 'location cannot change from westeurope to eastus' in text
    assert 'admin_username cannot change from azureuser to root' in text
    assert 'zones cannot change' in text


def test_validate_params_bad_input():
    errors = ' | '.join(_vmss.validate_params(params(capacity=-1, vm_size='huge', subnet_id='/subscriptions/s/x', image='nope',
                                                     ssh_public_keys=['not a key'], zones=['4'])))
    for text in ('capacity must be 0 or more, got -1', "vm_size 'huge'", 'subnet_id', "image 'nope'", 'not an OpenSSH public key',
                 "zones: '4'"):
        assert text in errors


def test_parse_image_forms():
    assert _vmss.parse_image('a:b:c') == dict(publisher='a', offer='b', sku='c', version='latest')
    assert _vmss.parse_image('/subscriptions/s/images/i') == dict(id='/subscriptions/s/images/i')
    assert _vmss.parse_image(dict(publisher='a', offer='b', sku='c', version=1)) == dict(publisher='a', offer='b', sku='c', version='1')


def test_instances_with_ips_from_nic_list():
    vm_id = '/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachineScaleSets/servers/virtualMachines/0'
    nics = [dict(properties=dict(virtualMachine=dict(id=vm_id.upper()), ipConfigurations=[
        dict(properties=dict(primary=False, privateIPAddress='10.0.1.9')), dict(properties=dict(primary=True, privateIPAddress='10.0.1.4'))]))]
    vm = dict(id=vm_id, name='servers_0', instanceId='0', properties=dict(
        latestModelApplied=False, protectionPolicy=dict(protectFromScaleIn=True),
        instanceView=dict(statuses=[dict(code='ProvisioningState/succeeded'), dict(code='PowerState/running')])))
    inst = _vmss_readers.instance_from_rest(vm, _vmss_readers.index_nics(nics))
    assert inst['private_ip'] == '10.0.1.4' and inst['private_ips'] == ['10.0.1.4', '10.0.1.9']
    assert inst['power_state'] == 'running' and inst['protect_from_scale_in'] is True and inst['latest_model_applied'] is False


def test_patch_removes_purged_tags_with_null():
    _body, rest = created_rest()
    current = _vmss.model_from_rest(rest)
    d, _errors = _vmss.compare(current, _vmss.desired_from_params(params(tags={'new': 'x'})), purge_tags=True)
    patch = _vmss.patch_body(d.after, d.changed_keys, None, before=current)
    assert patch['tags']['role'] is None and patch['tags']['new'] == 'x'
    assert patch['tags'][_vmss.CUSTOM_DATA_TAG] == current['custom_data_sha256']  # the hash tag is kept

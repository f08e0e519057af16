"""Unit tests for the cluster spec: defaults, derivation (pools, networks, names, tags) and every refusal."""

from __future__ import annotations

import copy

import pytest
from ansible_collections.hashistack.azure.plugins.module_utils import _cluster_spec as cs

SUB = '0b1f6471-1bf0-4dda-aec3-cb9272f09590'
MINIMAL = {'cluster': 'prod', 'azure': {'subscription_id': SUB, 'location': 'westeurope'},
           'pools': [{'name': 'web', 'count': 2}, {'name': 'batch', 'location': 'northeurope', 'count': 0}]}


def spec(**changes):
    s = copy.deepcopy(MINIMAL)
    s.update(changes)
    return s


def refused(s):
    with pytest.raises(cs.SpecError) as info:
        cs.normalize(s)
    return str(info.value)


# ------------------------------------------------------------------ defaults and derivation

def test_minimal_spec_defaults():
    c = cs.normalize(MINIMAL)
    assert c['cluster'] == 'prod'
    assert c['azure'] == {'subscription_id': SUB, 'resource_group': 'hashistack-prod', 'location': 'westeurope'}
    assert (c['consul_datacenter'], c['nomad_region']) == ('dc1', 'global')
    assert (c['consul_version'], c['nomad_version']) == (cs.CONSUL_VERSION, cs.NOMAD_VERSION)
    assert c['image'] == cs.IMAGE and c['admin_user'] == cs.ADMIN_USER and c['ssh_public_keys'] == []
    assert c['server_pool'] == 'servers' and c['server_count'] == 3
    assert c['pools']['servers'] == {'role': 'server', 'count': 3, 'vm_size': cs.VM_SIZE, 'location': 'westeurope',
                                     'zones': [], 'nomad_datacenter': 'westeurope', 'node_class': 'servers',
                                     'scale_set': 'prod-servers', 'network': 'prod-westeurope'}
    assert c['tags'] == {'hashistack_cluster': 'prod'}
    assert 'network_security_group' not in c
    assert {loc: n['security_group'] for loc, n in c['networks'].items()} == {
        loc: 'prod-nodes-%s' % loc for loc in c['locations']}


def test_pools_inherit_from_servers_and_azure_and_take_their_location_as_nomad_datacenter():
    c = cs.normalize(spec(servers={'vm_size': 'Standard_D2s_v3', 'count': 5, 'zones': [1, 2]}))
    assert list(c['pools']) == ['servers', 'web', 'batch']
    assert c['server_count'] == 5 and c['pools']['servers']['zones'] == ['1', '2']
    web, batch = c['pools']['web'], c['pools']['batch']
    assert (web['role'], web['vm_size'], web['location'], web['nomad_datacenter']) == \
        ('client', 'Standard_D2s_v3', 'westeurope', 'westeurope')
    assert (batch['location'], batch['nomad_datacenter'], batch['count']) == ('northeurope', 'northeurope', 0)
    assert batch['network'] == 'prod-northeurope' and batch['scale_set'] == 'prod-batch'


def test_pool_nomad_datacenter_and_node_class_when_given():
    c = cs.normalize(spec(pools=[{'name': 'web', 'location': 'northeurope', 'nomad_datacenter': 'edge', 'node_class': 'fe'}]))
    assert c['pools']['web']['nomad_datacenter'] == 'edge' and c['pools']['web']['node_class'] == 'fe'
    assert cs.pool_nomad_datacenter(None, 'uksouth') == 'uksouth'
    assert cs.pool_nomad_datacenter('edge', 'uksouth') == 'edge'


def test_derived_networks_follow_the_locations_in_order():
    c = cs.normalize(spec(servers={'location': 'northeurope'}))
    assert c['locations'] == ['northeurope', 'westeurope']
    assert c['networks'] == {
        'northeurope': {'name': 'prod-northeurope', 'location': 'northeurope', 'address_space': '10.77.0.0/16',
                        'subnet': '10.77.0.0/24', 'subnet_name': 'nodes', 'security_group': 'prod-nodes-northeurope'},
        'westeurope': {'name': 'prod-westeurope', 'location': 'westeurope', 'address_space': '10.78.0.0/16',
                       'subnet': '10.78.0.0/24', 'subnet_name': 'nodes', 'security_group': 'prod-nodes-westeurope'}}
    assert c['ssh_sources'] == ['10.77.0.0/16', '10.78.0.0/16']


def test_given_networks_and_ssh_sources():
    c = cs.normalize(spec(networks={'westeurope': '10.10.0.0/16', 'northeurope': '172.16.8.0/22'},
                          ssh_sources=['203.0.113.0/24']))
    assert c['networks']['northeurope']['address_space'] == '172.16.8.0/22'
    assert c['networks']['northeurope']['subnet'] == '172.16.8.0/24'
    assert c['ssh_sources'] == ['203.0.113.0/24']
    assert cs.normalize(spec(ssh_sources=[]))['ssh_sources'] == []


def test_scale_sets_carry_the_cluster_tags():
    c = cs.normalize(spec(consul_datacenter='eu', nomad_region='europe'))
    by_name = dict((s['name'], s) for s in c['scale_sets'])
    assert list(by_name) == ['prod-servers', 'prod-web', 'prod-batch']
    batch = by_name['prod-batch']
    assert batch == {'name': 'prod-batch', 'pool': 'batch', 'role': 'client', 'location': 'northeurope',
                     'vm_size': cs.VM_SIZE, 'capacity': 0, 'zones': [], 'network': 'prod-northeurope',
                     'tags': {'hashistack_cluster': 'prod', 'hashistack_role': 'client', 'hashistack_pool': 'batch',
                              'hashistack_consul_datacenter': 'eu', 'hashistack_nomad_region': 'europe',
                              'hashistack_nomad_datacenter': 'northeurope'}}
    assert set(batch['tags']) == set(cs.CLUSTER_TAGS)
    assert by_name['prod-servers']['tags']['hashistack_role'] == 'server'


VAULT_NAME = __import__('re').compile(r'^[a-z](?!.*--)[a-z0-9-]{1,22}[a-z0-9]$')


@pytest.mark.parametrize('cluster', ['prod', 'a', '0x', 'very-long-cluster-name-of-31-ch', 'a--b-', '9--'])
def test_key_vault_name_is_a_valid_vault_name_for_any_cluster_name(cluster):
    kv = cs.normalize(spec(cluster=cluster))['key_vault']
    assert VAULT_NAME.match(kv['name']), kv['name']
    assert kv['gossip_secrets'] == {'consul': 'consul-gossip-key', 'nomad': 'nomad-gossip-key'}


def test_key_vault_name_differs_per_subscription_and_group_and_is_stable():
    a = cs.normalize(MINIMAL)['key_vault']['name']
    assert a == cs.normalize(MINIMAL)['key_vault']['name'] and a.startswith('hs-prod-')
    other_sub = spec(azure={'subscription_id': SUB.replace('0b', '1c'), 'location': 'westeurope'})
    other_rg = spec(azure={'subscription_id': SUB, 'location': 'westeurope', 'resource_group': 'x'})
    assert len({a, cs.normalize(other_sub)['key_vault']['name'], cs.normalize(other_rg)['key_vault']['name']}) == 3


def test_empty_yaml_values_mean_not_set():
    c = cs.normalize(spec(pools=None, servers=None, networks=None, ssh_sources=None))
    assert list(c['pools']) == ['servers'] and c['ssh_sources'] == ['10.77.0.0/16']


def test_normalize_is_stable_on_its_own_schema_output():
    # the module validates the spec with the same schema first (unset keys become None): same result
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
    validated = ArgumentSpecValidator(cs.OPTIONS).validate(copy.deepcopy(MINIMAL)).validated_parameters
    assert cs.normalize(validated) == cs.normalize(MINIMAL)


# ------------------------------------------------------------------ refusals (field, cause, fix)

@pytest.mark.parametrize('count, fragments', [
    (0, ['servers.count is 0', 'elect a leader', 'set 3']),
    (2, ['servers.count is 2, an even number', 'set 1 or 3']),
    (4, ['servers.count is 4, an even number', 'majority of 4 is 3', 'set 3 or 5']),
    (9, ['servers.count is 9', 'set 5 or 7']),
    (-1, ['servers.count is -1']),
])
def test_server_count_refused(count, fragments):
    msg = refused(spec(servers={'count': count}))
    for fragment in fragments:
        assert fragment in msg


@pytest.mark.parametrize('count', [1, 3, 5, 7])
def test_server_count_accepted(count):
    assert cs.normalize(spec(servers={'count': count}))['server_count'] == count


@pytest.mark.parametrize('key', ['consul_datacenter', 'nomad_region'])
def test_pool_with_its_own_datacenter_or_region_refused(key):
    msg = refused(spec(pools=[{'name': 'web', key: 'other'}]))
    assert f'pools[0] (web).{key} is set' in msg
    assert 'a pool cannot have its own' in msg and 'remove it' in msg


def test_unknown_keys_refused_with_their_path():
    msg = refused(spec(bogus=1, pools=[{'name': 'web', 'size': 'x'}], servers={'cout': 3}))
    assert 'unknown key(s)' in msg
    for key in ('hashistack_spec.bogus', 'hashistack_spec.pools.size', 'hashistack_spec.servers.cout'):
        assert key in msg


@pytest.mark.parametrize('changes, fragment', [
    ({'cluster': 'Prod'}, "cluster 'Prod' is not a valid cluster name"),
    ({'cluster': 'a' * 32}, 'is not a valid cluster name'),
    ({'cluster': 'my_cluster'}, 'is not a valid cluster name'),
    ({'consul_datacenter': 'DC 1'}, "consul_datacenter 'DC 1' is not a valid Consul datacenter"),
    ({'nomad_region': 'eu/west'}, "nomad_region 'eu/west' is not a valid Nomad region"),
    ({'azure': {'location': 'West Europe'}}, "servers.location 'West Europe' is not a valid Azure location"),
    ({'azure': {'location': 'westeurope', 'subscription_id': 'mine'}}, "azure.subscription_id 'mine' is not a valid"),
    ({'azure': {'location': 'westeurope', 'resource_group': 'rg.'}}, "azure.resource_group 'rg.' is not a valid"),
    ({'pools': [{'name': 'Web'}]}, "pools[0] (Web).name 'Web' is not a valid pool name"),
    ({'pools': [{'name': 'servers'}]}, "'servers' is the server group's name"),
    ({'pools': [{'name': 'web'}, {'name': 'web'}]}, "pool 'web' is defined twice"),
    ({'pools': [{'name': 'web', 'count': -1}]}, 'pools[0] (web).count is -1'),
    ({'pools': [{'name': 'web', 'nomad_datacenter': 'a b'}]}, "pools (web).nomad_datacenter 'a b' is not a valid"),
    ({'pools': [{'name': 'web', 'vm_size': 'big'}]}, "pools (web): vm_size 'big' is not an Azure VM size"),
    ({'servers': {'zones': ['4']}}, "servers: zones: '4' is not one of 1, 2, 3"),
    ({'consul_version': 'v1.20'}, "consul_version 'v1.20' is not a valid release version"),
    ({'image': 'debian'}, 'hashistack_spec.image:'),
    ({'admin_user': 'Root User'}, "admin_user 'Root User' is not a valid Linux user name"),
    ({'ssh_public_keys': ['hello']}, 'is not an OpenSSH public key'),
    ({'ssh_sources': ['1.2.3.4']}, "ssh_sources[0]: '1.2.3.4' is not a CIDR prefix"),
    ({'pools': 'web'}, 'hashistack_spec:'),
])
def test_invalid_values_refused(changes, fragment):
    assert fragment in refused(spec(**changes))


@pytest.mark.parametrize('networks, fragment', [
    ({'westeurope': '10.0.0.0/33', 'northeurope': '10.1.0.0/16'}, 'networks.westeurope'),
    ({'westeurope': '10.0.0.1/16', 'northeurope': '10.1.0.0/16'}, 'host bits set'),
    ({'westeurope': '10.0.0.0/25', 'northeurope': '10.1.0.0/16'}, 'smaller than a /24'),
    ({'westeurope': '10.0.0.0/8', 'northeurope': '10.1.0.0/16'}, 'westeurope (10.0.0.0/8) and northeurope (10.1.0.0/16) overlap'),
    ({'westeurope': '10.0.0.0/16'}, 'networks has no address space for northeurope'),
    ({'westeurope': '10.0.0.0/16', 'northeurope': '10.1.0.0/16', 'uksouth': '10.2.0.0/16'},
     'networks.uksouth: no server group or pool is in uksouth'),
])
def test_bad_networks_refused(networks, fragment):
    assert fragment in refused(spec(networks=networks))


def test_every_problem_is_reported_at_once():
    err = pytest.raises(cs.SpecError, cs.normalize, spec(cluster='Prod', servers={'count': 2})).value
    assert len(err.errors) == 2
    assert str(err).startswith('hashistack_spec is not valid (schema: ansible-doc hashistack.azure.cluster_spec)')


def test_missing_required_refused():
    assert 'cluster' in refused({'azure': {'location': 'westeurope'}})
    assert 'location' in refused({'cluster': 'prod', 'azure': {}})
    assert 'must be a dict' in refused(['prod'])

"""Unit tests for the pure logic inside modules: NSG rule generation, quota evaluation, role assignment names."""

from __future__ import annotations

from ansible_collections.hashistack.azure.plugins.modules import compute_quota_info as quota
from ansible_collections.hashistack.azure.plugins.modules import network_security_group as nsg
from ansible_collections.hashistack.azure.plugins.modules import role_assignment as ra
from ansible_collections.hashistack.azure.plugins.modules import role_definition as rd
from ansible_collections.hashistack.azure.plugins.modules import signed_in_principal_info as me


def nsg_params(**kw):
    p = dict(rules=[], cluster_address_prefixes=['10.10.0.0/16', '10.20.0.0/16'], consul_ports=True, nomad_ports=True,
             ssh_sources=['10.0.0.0/24'], generated_rules_priority=1000)
    p.update(kw)
    return p


def test_generated_rules_cover_consul_nomad_and_ssh_only_from_sources():
    rules = dict((r['name'], r) for r in nsg.generated_rules(nsg_params()))
    assert set(rules) == {'ssh', 'consul-tcp', 'consul-udp', 'nomad-tcp', 'nomad-udp'}
    assert rules['consul-tcp']['destination_port_ranges'] == sorted(['8300-8302', '8500', '8600'])
    assert rules['consul-udp']['destination_port_ranges'] == sorted(['8301-8302', '8600'])
    assert rules['nomad-tcp']['destination_port_ranges'] == ['4646-4648']
    assert rules['nomad-udp'] == dict(rules['nomad-udp'], protocol='Udp', destination_port_ranges=['4648'])
    for name in ('consul-tcp', 'consul-udp', 'nomad-tcp', 'nomad-udp'):
        assert rules[name]['source_address_prefixes'] == ['10.10.0.0/16', '10.20.0.0/16']
        assert rules[name]['destination_address_prefixes'] == ['10.10.0.0/16', '10.20.0.0/16']
    assert rules['ssh']['source_address_prefixes'] == ['10.0.0.0/24'] and rules['ssh']['destination_port_ranges'] == ['22']
    assert len(set(r['priority'] for r in rules.values())) == 5


def test_nsg_validation_errors():
    _rules, errors = nsg.validate(nsg_params(cluster_address_prefixes=None, rules=[
        dict(name='ssh', priority=1000), dict(name='x', priority=50)]))
    text = ' | '.join(errors)
    assert 'cluster_address_prefixes is required' in text
    assert 'rule name ssh is used twice' in text
    assert 'priority 50 is outside 100-4096' in text
    assert 'same Inbound priority 1000' in text


def test_rule_rest_roundtrip_is_stable():
    rule = nsg.generated_rules(nsg_params())[1]
    assert nsg.rule_from_rest(nsg.rule_to_rest(rule)) == rule


def usage(limit_family, usage_family, limit_total=100, usage_total=0, family='standardDSv3Family'):
    return quota.usage_map([dict(name=dict(value=family), limit=limit_family, currentValue=usage_family),
                            dict(name=dict(value='cores'), limit=limit_total, currentValue=usage_total)])


SIZES = {'standard_d2s_v3': ('standardDSv3Family', 2), 'standard_d4s_v3': ('standardDSv3Family', 4)}


def test_quota_fits_and_not_with_room_elsewhere():
    items = [dict(vm_size='Standard_D2s_v3', count=3, location='westeurope', name='servers'),
             dict(vm_size='Standard_D4s_v3', count=5, location='westeurope', name='clients-a'),
             dict(vm_size='Standard_D4s_v3', count=5, location='eastus', name='clients-b')]
    sizes = {'westeurope': SIZES, 'eastus': SIZES}
    fits, per, short = quota.evaluate(['westeurope', 'eastus'], items, sizes, {'westeurope': usage(100, 0), 'eastus': usage(100, 0)})
    assert fits and per['westeurope']['families']['standardDSv3Family']['needed'] == 26
    fits, per, short = quota.evaluate(['westeurope', 'eastus'], items, sizes, {'westeurope': usage(20, 0), 'eastus': usage(100, 10)})
    assert not fits
    assert short == [dict(location='westeurope', family='standardDSv3Family', needed=26, limit=20, usage=0, short=6, room_in=['eastus'])]
    msg = quota.message_for(fits, short, per)
    assert 'standardDSv3Family in westeurope needs 26 vCPUs' in msg and '6 vCPUs short' in msg and 'Room for 26 standardDSv3Family vCPUs in: eastus' in msg


def test_quota_regional_total_limits_too():
    items = [dict(vm_size='Standard_D4s_v3', count=5, location=None, name='pool')]
    fits, per, short = quota.evaluate(['eastus'], items, {'eastus': SIZES}, {'eastus': usage(100, 0, limit_total=10, usage_total=4)})
    assert not fits and short[0]['family'].startswith('regional total') and short[0]['short'] == 14


def test_role_assignment_name_is_deterministic():
    a = ra.assignment_name('/subscriptions/S/resourceGroups/RG', 'ACDD72A7-3385-48EF-BD42-F606FBA81AE7', 'P1')
    b = ra.assignment_name('/subscriptions/s/resourceGroups/rg/', 'acdd72a7-3385-48ef-bd42-f606fba81ae7', 'p1')
    c = ra.assignment_name('/subscriptions/s/resourceGroups/rg', 'acdd72a7-3385-48ef-bd42-f606fba81ae7', 'p2')
    assert a == b != c
    # names that earlier releases gave to existing assignments: a re-run must keep finding them
    assert a == '04f0572c-5cc7-541b-ae6b-ccd93e3fb4f1'


def test_role_definition_guid_is_stable_per_scope_and_name():
    a = rd.definition_guid('/subscriptions/S/resourceGroups/RG/', 'Auto Join')
    assert a == rd.definition_guid('/subscriptions/s/resourcegroups/rg', 'auto join')
    assert a != rd.definition_guid('/subscriptions/s/resourcegroups/rg2', 'auto join')
    assert a != rd.definition_guid('/subscriptions/s/resourcegroups/rg', 'auto join 2')
    assert a == 'd59f3b70-ff1a-5f6d-b52b-33d0504e5482'  # as earlier releases named it


def test_role_definition_model_reads_the_union_of_permission_blocks():
    rest = {'id': '/subscriptions/s/providers/Microsoft.Authorization/roleDefinitions/g', 'name': 'g',
            'properties': {'roleName': 'r', 'assignableScopes': ['/subscriptions/s'], 'permissions': [
                {'actions': ['a/b/read'], 'notActions': ['a/b/c/read']}, {'actions': ['x/y/read'], 'dataActions': None}]}}
    model = rd.model_from_rest(rest)
    assert model['actions'] == ['a/b/read', 'x/y/read'] and model['not_actions'] == ['a/b/c/read']
    assert model['data_actions'] == [] and model['description'] == '' and model['guid'] == 'g'
    assert rd.same_strings(['A/b/READ', 'x'], ['x', 'a/B/read']) and not rd.same_strings(['a'], ['a', 'b'])


def _jwt(claims):
    import base64
    import json
    enc = [base64.urlsafe_b64encode(json.dumps(c).encode()).decode().rstrip('=') for c in ({'alg': 'RS256'}, claims)]
    return '.'.join(enc + ['c2ln'])


def test_signed_in_principal_from_token_claims():
    user = me.principal_from_claims(me.claims_of(_jwt({'oid': 'u-1', 'idtyp': 'user', 'tid': 't-1'})))
    assert user == {'object_id': 'u-1', 'principal_type': 'User', 'tenant_id': 't-1', 'app_id': ''}
    app = me.principal_from_claims(me.claims_of(_jwt({'oid': 'sp-1', 'idtyp': 'app', 'tid': 't', 'appid': 'c-1'})))
    assert app['principal_type'] == 'ServicePrincipal' and app['app_id'] == 'c-1'
    # a token that does not say its type: no type (role_assignment then leaves principalType unset)
    assert me.principal_from_claims({'oid': 'x'})['principal_type'] == ''
    import pytest
    with pytest.raises(ValueError, match='not a JWT'):
        me.claims_of('opaque-token')

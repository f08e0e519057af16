"""resource_group, virtual_network, network_security_group, virtual_network_peering and role_assignment
through ansible-playbook against the ARM emulator: create, idempotent re-run (zero writes), check mode (zero writes),
diff, update, delete, bad input."""

from __future__ import annotations

from .conftest import arm_requests, make_rg, mark, ok, sub_of, writes


def test_resource_group_lifecycle(arm, play, rg):
    task = {'resource_group': {'name': rg, 'location': 'westeurope', 'tags': {'cluster': 'a'}}}
    m = mark(arm)
    r = ok(play(task, check=True))
    assert r['changed'] and writes(arm, m) == []
    r = ok(play(task))
    assert r['changed'] and r['resource_group']['location'] == 'westeurope' and r['resource_group']['tags'] == {'cluster': 'a'}
    assert [w['method'] for w in writes(arm, m)] == ['PUT']
    m = mark(arm)
    r = ok(play(task))
    assert not r['changed'] and writes(arm, m) == []
    # diff + update
    task['resource_group']['tags'] = {'cluster': 'b'}
    m = mark(arm)
    r = ok(play(task, check=True, diff=True))
    assert r['changed'] and writes(arm, m) == []
    assert r['diff']['before']['tags'] == {'cluster': 'a'} and r['diff']['after']['tags'] == {'cluster': 'b'}
    lines = r['_stdout'].splitlines()
    assert any(x.startswith('+') and '"cluster": "b"' in x for x in lines), r['_stdout']
    assert any(x.startswith('-') and '"cluster": "a"' in x for x in lines), r['_stdout']
    r = ok(play(task))
    assert r['changed'] and r['resource_group']['tags'] == {'cluster': 'b'}
    # immutable location
    m = mark(arm)
    r = play({'resource_group': {'name': rg, 'location': 'eastus'}})
    assert r['failed'] and 'location of a resource group is immutable' in r['msg'] and writes(arm, m) == []
    # delete
    r = ok(play({'resource_group': {'name': rg, 'state': 'absent'}}))
    assert r['changed']
    m = mark(arm)
    r = ok(play({'resource_group': {'name': rg, 'state': 'absent'}}))
    assert not r['changed'] and writes(arm, m) == []


def vnet_task(rg, **kw):
    args = {'resource_group': rg, 'name': 'vnet1', 'address_prefixes': ['10.10.0.0/16'],
            'subnets': [{'name': 'servers', 'address_prefix': '10.10.1.0/24'}]}
    args.update(kw)
    return {'virtual_network': args}


def test_virtual_network_lifecycle(arm, play, rg, sdk):
    make_rg(sdk, rg)
    m = mark(arm)
    r = ok(play(vnet_task(rg), check=True))
    assert r['changed'] and writes(arm, m) == []
    r = ok(play(vnet_task(rg)))
    assert r['changed'] and r['virtual_network']['location'] == 'westeurope'
    assert [s['name'] for s in r['virtual_network']['subnets']] == ['servers']
    assert r['virtual_network']['subnets'][0]['id'].endswith('/virtualNetworks/vnet1/subnets/servers')
    m = mark(arm)
    r = ok(play(vnet_task(rg)))
    assert not r['changed'] and writes(arm, m) == []
    # add a subnet and an address prefix: diff then update
    upd = vnet_task(rg, address_prefixes=['10.10.0.0/16', '10.11.0.0/16'],
                    subnets=[{'name': 'servers', 'address_prefix': '10.10.1.0/24'}, {'name': 'clients', 'address_prefix': '10.11.0.0/20'}])
    m = mark(arm)
    r = ok(play(upd, check=True, diff=True))
    assert r['changed'] and writes(arm, m) == []
    assert sorted(r['diff']['after']['address_prefixes']) == ['10.10.0.0/16', '10.11.0.0/16']
    assert any(c.startswith('address_prefixes:') for c in r['changes'])
    r = ok(play(upd))
    assert r['changed'] and sorted(s['name'] for s in r['virtual_network']['subnets']) == ['clients', 'servers']
    m = mark(arm)
    assert not ok(play(upd))['changed'] and writes(arm, m) == []
    # without purge_subnets, listing one subnet keeps the other
    m = mark(arm)
    assert not ok(play(vnet_task(rg, address_prefixes=None)))['changed'] and writes(arm, m) == []
    r = play(vnet_task(rg, address_prefixes=None, subnets=[{'name': 'x', 'address_prefix': '172.16.0.0/24'}]))
    assert r['failed'] and 'subnet x: 172.16.0.0/24 is outside the address space 10.10.0.0/16, 10.11.0.0/16' in r['msg']
    assert writes(arm, m) == []
    r = ok(play(vnet_task(rg, address_prefixes=None, purge_subnets=True)))
    assert r['changed'] and [s['name'] for s in r['virtual_network']['subnets']] == ['servers']
    r = ok(play(vnet_task(rg, state='absent')))
    assert r['changed']
    m = mark(arm)
    assert not ok(play(vnet_task(rg, state='absent')))['changed'] and writes(arm, m) == []


def test_virtual_network_bad_cidrs_fail_before_any_request(arm, play, rg):
    m = mark(arm)
    r = play(vnet_task(rg, address_prefixes=['10.10.0.1/16'], subnets=[
        {'name': 'a', 'address_prefix': '10.20.0.0/24'}, {'name': 'b', 'address_prefix': '10.10.300.0/24'}]))
    assert r['failed']
    assert 'host bits set; the network is 10.10.0.0/16' in r['msg']
    assert "'10.10.300.0/24' is not a valid CIDR prefix" in r['msg']
    assert arm_requests(arm, m) == []


def test_virtual_network_missing_resource_group(arm, play, rg):
    m = mark(arm)
    r = play(vnet_task(rg))
    assert r['failed'] and f'Resource group {rg} does not exist: create it first' in r['msg'] and writes(arm, m) == []


def nsg_task(rg, **kw):
    args = {'resource_group': rg, 'name': 'nodes', 'cluster_address_prefixes': ['10.10.0.0/16', '10.20.0.0/16'],
            'consul_ports': True, 'nomad_ports': True, 'ssh_sources': ['10.0.0.0/24']}
    args.update(kw)
    return {'network_security_group': args}


def test_network_security_group_lifecycle(arm, play, rg, sdk):
    make_rg(sdk, rg)
    m = mark(arm)
    r = ok(play(nsg_task(rg), check=True))
    assert r['changed'] and writes(arm, m) == []
    r = ok(play(nsg_task(rg)))
    rules = {x['name']: x for x in r['network_security_group']['rules']}
    assert set(rules) == {'ssh', 'consul-tcp', 'consul-udp', 'nomad-tcp', 'nomad-udp'}
    assert rules['ssh']['source_address_prefixes'] == ['10.0.0.0/24']
    assert rules['consul-udp']['protocol'] == 'Udp' and rules['consul-udp']['destination_port_ranges'] == ['8301-8302', '8600']
    m = mark(arm)
    assert not ok(play(nsg_task(rg)))['changed'] and writes(arm, m) == []
    upd = nsg_task(rg, ssh_sources=['10.0.0.0/24', '192.168.7.0/24'], nomad_ports=False)
    r = ok(play(upd, check=True, diff=True))
    assert r['changed'] and sorted(r['changes']) == ['rule nomad-tcp: remove', 'rule nomad-udp: remove',
                                                     "rule ssh: source_address_prefixes ['10.0.0.0/24'] -> ['10.0.0.0/24', '192.168.7.0/24']"]
    r = ok(play(upd))
    assert sorted(x['name'] for x in r['network_security_group']['rules']) == ['consul-tcp', 'consul-udp', 'ssh']
    m = mark(arm)
    assert not ok(play(upd))['changed'] and writes(arm, m) == []
    r = play(nsg_task(rg, cluster_address_prefixes=None))
    assert r['failed'] and 'cluster_address_prefixes is required' in r['msg']
    assert ok(play(nsg_task(rg, state='absent')))['changed']


def test_peering_both_directions(arm, play, rg, sdk):
    make_rg(sdk, rg)
    a = ok(play(vnet_task(rg, name='vnet-a', location='westeurope', address_prefixes=['10.10.0.0/16'], subnets=[])))['virtual_network']['id']
    b = ok(play(vnet_task(rg, name='vnet-b', location='eastus', address_prefixes=['10.20.0.0/16'], subnets=[])))['virtual_network']['id']
    task = {'virtual_network_peering': {'virtual_network': a, 'remote_virtual_network': b}}
    m = mark(arm)
    r = ok(play(task, check=True))
    assert r['changed'] and r['changes'] == ['vnet-a-to-vnet-b: create', 'vnet-b-to-vnet-a: create'] and writes(arm, m) == []
    r = ok(play(task))
    assert r['changed'] and len(r['peerings']) == 2
    assert {p['name'] for p in r['peerings']} == {'vnet-a-to-vnet-b', 'vnet-b-to-vnet-a'}
    assert all(p['peering_state'] == 'Connected' for p in r['peerings']), r['peerings']
    m = mark(arm)
    assert not ok(play(task))['changed'] and writes(arm, m) == []
    task['virtual_network_peering']['allow_forwarded_traffic'] = True
    r = ok(play(task, diff=True))
    assert r['changed'] and all(p['allow_forwarded_traffic'] for p in r['peerings'])
    assert len([w for w in writes(arm, m) if w['method'] == 'PUT']) == 2
    task['virtual_network_peering']['state'] = 'absent'
    assert ok(play(task))['changed']
    m = mark(arm)
    assert not ok(play(task))['changed'] and writes(arm, m) == []


def test_role_assignment_lifecycle(arm, play, rg, sdk):
    make_rg(sdk, rg)
    scope = f'/subscriptions/{sub_of(arm)}/resourceGroups/{rg}'
    principal = arm.endpoint['principal_id']  # the emulator only knows existing principals
    task = {'role_assignment': {'scope': scope, 'role': 'Reader', 'principal_id': principal, 'principal_type': 'ServicePrincipal'}}
    m = mark(arm)
    assert ok(play(task, check=True))['changed'] and writes(arm, m) == []
    r = ok(play(task))
    assert r['changed'] and r['role_assignment']['principal_id'] == principal
    assert r['role_assignment']['role_definition_id'].lower().endswith('acdd72a7-3385-48ef-bd42-f606fba81ae7')
    name = r['role_assignment']['name']
    m = mark(arm)
    r = ok(play(task))
    assert not r['changed'] and r['role_assignment']['name'] == name and writes(arm, m) == []
    r = play({'role_assignment': dict(task['role_assignment'], role='No Such Role')})
    assert r['failed'] and "Role 'No Such Role' does not exist" in r['msg']
    task['role_assignment']['state'] = 'absent'
    assert ok(play(task))['changed']
    m = mark(arm)
    assert not ok(play(task))['changed'] and writes(arm, m) == []

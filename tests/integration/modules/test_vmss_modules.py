"""vmss, vmss_info, vmss_instance and compute_quota_info through ansible-playbook against the ARM emulator."""

from __future__ import annotations

import hashlib

import pytest

from .conftest import SSH_KEY, arm_requests, mark, ok, writes

IMAGE = 'Canonical:0001-com-ubuntu-server-jammy:22_04-lts-gen2:latest'
CLOUD_INIT = '#cloud-config\nruncmd:\n  - echo hello\n'


@pytest.fixture
def net(rg, sdk):
    """Resource group + vnet 10.50.0.0/16 with subnet 'nodes' + NSG, made with the SDK; returns ids."""
    from azure.mgmt.network import NetworkManagementClient
    from azure.mgmt.resource.resources import ResourceManagementClient
    sdk.client(ResourceManagementClient).resource_groups.create_or_update(rg, {'location': 'westeurope'})
    network = sdk.client(NetworkManagementClient, polling_interval=0.2)
    vnet = network.virtual_networks.begin_create_or_update(rg, 'vnet', {
        'location': 'westeurope',
        'properties': {'addressSpace': {'addressPrefixes': ['10.50.0.0/16']},
                       'subnets': [{'name': 'nodes', 'properties': {'addressPrefix': '10.50.1.0/24'}}]}}).result()
    nsg = network.network_security_groups.begin_create_or_update(rg, 'nsg', {'location': 'westeurope'}).result()
    vnet_id = vnet['id'] if isinstance(vnet, dict) else vnet.id
    return {'rg': rg, 'subnet': vnet_id + '/subnets/nodes', 'nsg': nsg['id'] if isinstance(nsg, dict) else nsg.id}


def vmss_task(net, **kw):
    args = {'resource_group': net['rg'], 'name': 'servers', 'vm_size': 'Standard_D2s_v3', 'capacity': 2, 'image': IMAGE,
            'subnet_id': net['subnet'], 'network_security_group': net['nsg'], 'ssh_public_keys': [SSH_KEY],
            'custom_data': CLOUD_INIT, 'identity': 'SystemAssigned', 'tags': {'role': 'server'}}
    args.update(kw)
    return {'vmss': {k: v for k, v in args.items() if v is not None}}


def info(play, net, name='servers'):
    r = ok(play({'vmss_info': {'resource_group': net['rg'], 'name': name, 'include_instances': True}}))
    return r['scale_sets'][0] if r['scale_sets'] else None


def test_vmss_lifecycle(arm, play, net):
    # check mode on create: nothing sent
    m = mark(arm)
    r = ok(play(vmss_task(net), check=True, diff=True))
    assert r['changed'] and r['changes'] == ['create'] and writes(arm, m) == []
    assert r['diff']['after']['capacity'] == 2 and r['diff']['before'] == {}
    # create
    r = ok(play(vmss_task(net)))
    v = r['vmss']
    assert r['changed'] and v['capacity'] == 2 and v['provisioning_state'] == 'Succeeded'
    assert v['identity'] == 'SystemAssigned' and v['principal_id']
    assert v['overprovision'] is False and v['upgrade_policy'] == 'Manual' and v['orchestration_mode'] == 'Uniform'
    assert v['custom_data_sha256'] == hashlib.sha256(CLOUD_INIT.encode()).hexdigest()
    assert v['tags'] == {'role': 'server'}
    put = [w for w in writes(arm, m) if w['method'] == 'PUT' and 'virtualMachineScaleSets' in w['path']]
    assert len(put) == 1
    # idempotent: no write at all
    m = mark(arm)
    r = ok(play(vmss_task(net)))
    assert not r['changed'] and r['changes'] == [] and writes(arm, m) == []
    # check mode + diff of a scale-out: nothing sent, diff says exactly what changes
    m = mark(arm)
    r = ok(play(vmss_task(net, capacity=4), check=True, diff=True))
    assert r['changed'] and r['changes'] == ['capacity: 2 -> 4'] and writes(arm, m) == []
    assert r['diff']['before']['capacity'] == 2 and r['diff']['after']['capacity'] == 4
    # scale out, then in
    m = mark(arm)
    r = ok(play(vmss_task(net, capacity=4)))
    assert r['changed'] and r['vmss']['capacity'] == 4
    assert [w['method'] for w in writes(arm, m)] == ['PATCH']
    s = info(play, net)
    assert len(s['instances']) == 4
    assert all(i['private_ip'] and i['private_ip'].startswith('10.50.1.') for i in s['instances'])
    assert all(i['power_state'] == 'running' for i in s['instances'])
    r = ok(play(vmss_task(net, capacity=1)))
    assert r['changed'] and r['vmss']['capacity'] == 1
    assert len(info(play, net)['instances']) == 1
    # custom data change: detected through the hash tag, only the change is sent
    new_init = CLOUD_INIT + '  - echo again\n'
    r = ok(play(vmss_task(net, capacity=1, custom_data=new_init), diff=True))
    assert r['changed'] and r['changes'][0].startswith('custom_data: changed (sha256 ')
    assert r['vmss']['custom_data_sha256'] == hashlib.sha256(new_init.encode()).hexdigest()
    m = mark(arm)
    assert not ok(play(vmss_task(net, capacity=1, custom_data=new_init)))['changed'] and writes(arm, m) == []
    # immutable fields are refused before any write
    m = mark(arm)
    r = play(vmss_task(net, capacity=1, custom_data=new_init, admin_username='root', zones=['1']))
    assert r['failed'] and 'admin_username cannot change from azureuser to root' in r['msg'] and 'zones cannot change' in r['msg']
    assert writes(arm, m) == []
    # instances: the model changed (custom data) so the instance is behind; upgrade it, then it is idempotent
    inst = info(play, net)['instances'][0]
    assert inst['latest_model_applied'] is False
    iid = inst['instance_id']
    base = {'resource_group': net['rg'], 'vmss_name': 'servers', 'instance_ids': [iid]}
    m = mark(arm)
    assert ok(play({'vmss_instance': dict(base, action='upgrade')}, check=True))['changed'] and writes(arm, m) == []
    r = ok(play({'vmss_instance': dict(base, action='upgrade')}))
    assert r['changed'] and r['instances'][0]['latest_model_applied'] is True
    assert any(w['path'].lower().endswith('/manualupgrade') for w in writes(arm, m))
    m = mark(arm)
    assert not ok(play({'vmss_instance': dict(base, action='upgrade')}))['changed'] and writes(arm, m) == []
    r = ok(play({'vmss_instance': dict(base, protect_from_scale_in=True)}))
    assert r['changed'] and r['instances'][0]['protect_from_scale_in'] is True
    m = mark(arm)
    assert not ok(play({'vmss_instance': dict(base, protect_from_scale_in=True)}))['changed'] and writes(arm, m) == []
    r = ok(play({'vmss_instance': dict(base, action='restart')}))
    assert r['changed'] and r['changes'] == [f'restart: {iid}']
    assert any(w['path'].lower().endswith('/restart') for w in writes(arm, m))
    r = play({'vmss_instance': dict(base, instance_ids=['999'], action='restart')})
    assert r['failed'] and 'Instance(s) 999 are not in scale set servers' in r['msg']
    r = ok(play({'vmss_instance': dict(base, action='delete')}))
    assert r['changed'] and r['instances'] == []
    m = mark(arm)
    assert not ok(play({'vmss_instance': dict(base, action='delete')}))['changed'] and writes(arm, m) == []
    # delete
    m = mark(arm)
    assert ok(play({'vmss': {'resource_group': net['rg'], 'name': 'servers', 'state': 'absent'}}, check=True))['changed']
    assert writes(arm, m) == []
    assert ok(play({'vmss': {'resource_group': net['rg'], 'name': 'servers', 'state': 'absent'}}))['changed']
    m = mark(arm)
    assert not ok(play({'vmss': {'resource_group': net['rg'], 'name': 'servers', 'state': 'absent'}}))['changed']
    assert writes(arm, m) == []
    assert info(play, net) is None


def test_vmss_rides_out_throttling_and_server_errors(arm, play, net):
    path = r'/virtualMachineScaleSets/storm$'
    arm.fault(429, path=path, method='PUT', count=5, retry_after=1)
    arm.fault(500, path=r'/operations/|/operationResults/|/operationStatuses/|asyncoperation', method='GET', count=2)
    m = mark(arm)
    try:
        r = ok(play(vmss_task(net, name='storm', capacity=2)))
    finally:
        arm.clear_faults()
    assert r['changed'] and r['vmss']['provisioning_state'] == 'Succeeded' and r['vmss']['capacity'] == 2
    puts = [e for e in arm_requests(arm, m) if e['method'] == 'PUT' and e['path'].endswith('/storm')]
    assert [e['status'] for e in puts][:5] == [429] * 5 and puts[-1]['status'] in (200, 201)
    assert len(info(play, net, 'storm')['instances']) == 2
    m = mark(arm)
    assert not ok(play(vmss_task(net, name='storm', capacity=2)))['changed'] and writes(arm, m) == []


def test_vmss_bad_input_fails_clearly_and_creates_nothing(arm, play, net):
    m = mark(arm)
    r = play(vmss_task(net, name='bad', capacity=-1))
    assert r['failed'] and 'capacity must be 0 or more, got -1' in r['msg']
    assert arm_requests(arm, m) == []  # rejected before talking to Azure
    r = play(vmss_task(net, name='bad', vm_size='Standard_Q7s_v9'))
    assert r['failed'] and 'VM size Standard_Q7s_v9 is not offered in westeurope' in r['msg']
    r = play(vmss_task(net, name='bad', subnet_id=net['subnet'].replace('/nodes', '/missing')))
    assert r['failed'] and 'Subnet' in r['msg'] and 'does not exist: create it with hashistack.azure.virtual_network' in r['msg']
    r = play(vmss_task(net, name='bad', image='ubuntu'))
    assert r['failed'] and "image 'ubuntu' is neither" in r['msg']
    r = play({'vmss': {'resource_group': net['rg'], 'name': 'bad', 'capacity': 1}})
    assert r['failed'] and 'To create scale set bad' in r['msg'] and 'vm_size, image, subnet_id, ssh_public_keys' in r['msg']
    assert writes(arm, m) == []
    assert info(play, net, 'bad') is None


def test_vmss_quota_exceeded_names_family_region_and_shortfall(arm, play, net):
    arm.set_quotas({'westeurope': {'standardDSv3Family': 4}})
    try:
        r = play(vmss_task(net, name='big', vm_size='Standard_D4s_v3', capacity=2))
    finally:
        arm.set_quotas({'westeurope': {'standardDSv3Family': 100}})
    assert r['failed']
    assert 'vCPU quota exceeded while creating scale set big' in r['msg']
    assert 'family standardDSv3Family in westeurope has limit 4' in r['msg'] and 'short' in r['msg']
    assert info(play, net, 'big') is None


def test_compute_quota_info(arm, play):
    arm.set_quotas({'japaneast': {'standardDSv3Family': 10, 'cores': 50}, 'japanwest': {'standardDSv3Family': 40, 'cores': 50}})
    planned = [{'name': 'servers', 'vm_size': 'Standard_D2s_v3', 'count': 3, 'location': 'japaneast'},
               {'name': 'clients', 'vm_size': 'Standard_D4s_v3', 'count': 2}]
    try:
        m = mark(arm)
        r = ok(play({'compute_quota_info': {'locations': ['japaneast', 'japanwest'], 'planned': planned}}, check=True))
        assert writes(arm, m) == []
        fam = r['locations']['japaneast']['families']['standardDSv3Family']
        assert fam == {'limit': 10, 'usage': 0, 'needed': 14, 'available': 10, 'fits': False, 'short': 4}
        assert r['locations']['japanwest']['fits'] is True
        assert r['fits'] is False
        assert 'standardDSv3Family in japaneast needs 14 vCPUs' in r['message'] and '4 vCPUs short' in r['message']
        assert 'Room for 14 standardDSv3Family vCPUs in: japanwest' in r['message']
        r = ok(play({'compute_quota_info': {'locations': ['japanwest'], 'planned': planned[1:]}}))
        assert r['fits'] is True and r['message'].startswith('All planned VMs fit')
        r = play({'compute_quota_info': {'locations': ['japanwest'], 'planned': [{'vm_size': 'Standard_Nope', 'count': 1}]}})
        assert r['failed'] and 'VM size Standard_Nope' in r['msg']
    finally:
        arm.set_quotas({'japaneast': {'standardDSv3Family': 100, 'cores': 100}, 'japanwest': {'standardDSv3Family': 100, 'cores': 100}})


def test_vmss_identity_tags_and_upgrade_policy_updates(arm, play, net):
    base = dict(name='idt', capacity=0, identity=None, custom_data=None, tags={'a': '1'})
    r = ok(play(vmss_task(net, **base)))
    assert r['changed'] and r['vmss']['identity'] == 'None' and not r['vmss']['principal_id']
    assert r['vmss']['custom_data_sha256'] is None
    m = mark(arm)
    assert not ok(play(vmss_task(net, **base)))['changed'] and writes(arm, m) == []
    # turn on the system-assigned identity, add a tag and change the upgrade policy in one minimal PATCH
    upd = dict(base, identity='SystemAssigned', tags={'b': '2'}, upgrade_policy='Automatic')
    r = ok(play(vmss_task(net, **upd), diff=True))
    assert r['changed'] and r['vmss']['identity'] == 'SystemAssigned' and r['vmss']['principal_id']
    assert r['vmss']['tags'] == {'a': '1', 'b': '2'} and r['vmss']['upgrade_policy'] == 'Automatic'
    assert sorted(c.split(':')[0] for c in r['changes']) == ['identity', 'tags', 'upgrade_policy']
    assert [w['method'] for w in writes(arm, m)] == ['PATCH']
    m = mark(arm)
    assert not ok(play(vmss_task(net, **upd)))['changed'] and writes(arm, m) == []
    r = ok(play(vmss_task(net, **dict(upd, tags={'b': '2'}, purge_tags=True))))
    assert r['changed'] and r['vmss']['tags'] == {'b': '2'}


def _live_notice_and_policy(sdk, rg):
    from azure.mgmt.compute import ComputeManagementClient
    v = sdk.client(ComputeManagementClient).virtual_machine_scale_sets.get(rg, 'servers')
    notice = v.virtual_machine_profile.scheduled_events_profile.terminate_notification_profile
    return (notice.enable, notice.not_before_timeout), v.scale_in_policy.rules


def test_vmss_terminate_notification_and_scale_in_policy(arm, play, net, sdk):
    r = ok(play(vmss_task(net, capacity=1, terminate_notification_minutes=10, scale_in_policy='NewestVM')))
    assert r['vmss']['terminate_notification_minutes'] == 10 and r['vmss']['scale_in_policy'] == 'NewestVM'
    assert _live_notice_and_policy(sdk, net['rg']) == ((True, 'PT10M'), ['NewestVM'])
    # unchanged: no write; left out: left alone
    m = mark(arm)
    assert not ok(play(vmss_task(net, capacity=1, terminate_notification_minutes=10, scale_in_policy='NewestVM')))['changed']
    assert not ok(play(vmss_task(net, capacity=1)))['changed'] and writes(arm, m) == []
    # change the delay, then turn it off: one PATCH each
    r = ok(play(vmss_task(net, capacity=1, terminate_notification_minutes=5), diff=True))
    assert r['changes'] == ['terminate_notification_minutes: 10 -> 5']
    assert _live_notice_and_policy(sdk, net['rg']) == ((True, 'PT5M'), ['NewestVM'])
    r = ok(play(vmss_task(net, capacity=1, terminate_notification_minutes=0)))
    assert r['vmss']['terminate_notification_minutes'] == 0
    assert _live_notice_and_policy(sdk, net['rg'])[0][0] is False
    assert [w['method'] for w in writes(arm, m)] == ['PATCH', 'PATCH']
    # outside Azure's 5-15 minutes: refused before any write
    m = mark(arm)
    r = play(vmss_task(net, capacity=1, terminate_notification_minutes=20))
    assert r['failed'] and '5 to 15' in r['msg'] and writes(arm, m) == []

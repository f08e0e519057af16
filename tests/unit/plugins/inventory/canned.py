"""Canned ARM data for the vmss inventory unit tests, derived from the reference REST examples.

Shapes follow /work/shared/reference/azure/examples (VirtualMachineScaleSet_List_*, VirtualMachineScaleSetVM_*,
VmssNetworkInterfaceList.json); ids and values are adjusted to describe a small cluster.
"""

from __future__ import annotations

import copy
import json
import os

REFERENCE = os.environ.get('HASHISTACK_REFERENCE', '/work/shared/reference/azure/examples')
SUB = '00000000-0000-0000-0000-0000000000aa'
RG = 'hs-prod'


def _example(name):
    path = os.path.join(REFERENCE, name)
    if os.path.exists(path):
        with open(path, encoding='utf-8') as handle:
            return json.load(handle)
    return None


def _set_id(name, rg=RG):
    return f'/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachineScaleSets/{name}'


def scale_set(name, location, tags, mode='Uniform', size='Standard_D2s_v3', rg=RG):
    """A scale set shaped like VirtualMachineScaleSet_List_MaximumSet_Gen.json's first entry."""
    example = _example('VirtualMachineScaleSet_List_MaximumSet_Gen.json')
    base = copy.deepcopy(example['responses']['200']['body']['value'][0]) if example else {'properties': {}}
    base.update(name=name, id=_set_id(name, rg), location=location, tags=dict(tags),
                type='Microsoft.Compute/virtualMachineScaleSets')
    base['sku'] = {'name': size, 'tier': 'Standard', 'capacity': 2}
    base.setdefault('properties', {})['orchestrationMode'] = mode
    return base


def _statuses(power):
    statuses = [{'code': 'ProvisioningState/succeeded', 'level': 'Info', 'displayStatus': 'Provisioning succeeded'}]
    if power:
        statuses.append({'code': f'PowerState/{power}', 'level': 'Info', 'displayStatus': f'VM {power}'})
    return statuses


def uniform_vm(vmss, instance_id, computer_name, power='running', latest=True, zone=None, tags=None):
    """A scale-set VM shaped like VirtualMachineScaleSetVM_Get_WithUserData.json, with an expanded instance view."""
    example = _example('VirtualMachineScaleSetVM_Get_WithUserData.json')
    base = copy.deepcopy(example['responses']['200']['body']) if example else {'properties': {'osProfile': {}}}
    base.pop('resources', None)
    vm_id = f"{vmss['id']}/virtualMachines/{instance_id}"
    base.update(id=vm_id, name=f"{vmss['name']}_{instance_id}", instanceId=str(instance_id),
                location=vmss['location'], tags=dict(tags if tags is not None else vmss['tags']),
                sku={'name': vmss['sku']['name'], 'tier': 'Standard'})
    if zone:
        base['zones'] = [zone]
    props = base['properties']
    props['latestModelApplied'] = latest
    props['vmId'] = f'vm-{vmss["name"]}-{instance_id}'
    props['osProfile']['computerName'] = computer_name
    props['provisioningState'] = 'Succeeded'
    props['networkProfile'] = {'networkInterfaces': [{'id': f'{vm_id}/networkInterfaces/nic1'}]}
    props['instanceView'] = {'computerName': computer_name, 'statuses': _statuses(power)}
    props.pop('userData', None)
    return base


def flexible_vm(vmss, name, computer_name, power='running', zone=None):
    """A standalone VM of a Flexible scale set (Microsoft.Compute/virtualMachines with virtualMachineScaleSet.id)."""
    vm_id = f'/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Compute/virtualMachines/{name}'
    vm = {
        'id': vm_id, 'name': name, 'type': 'Microsoft.Compute/virtualMachines', 'location': vmss['location'],
        'tags': {},
        'properties': {
            'vmId': f'vm-{name}',
            'hardwareProfile': {'vmSize': 'Standard_B2s'},
            'osProfile': {'computerName': computer_name},
            'provisioningState': 'Succeeded',
            'virtualMachineScaleSet': {'id': vmss['id']},
            'networkProfile': {'networkInterfaces': [{'id': f'/subscriptions/{SUB}/resourceGroups/{RG}/providers/'
                                                            f'Microsoft.Network/networkInterfaces/{name}-nic',
                                                      'properties': {'primary': True}}]},
            'instanceView': {'computerName': computer_name, 'statuses': _statuses(power)},
        },
    }
    if zone:
        vm['zones'] = [zone]
    return vm


def uniform_nic(vm, private_ip, public_ip_id=None):
    """A NIC shaped like VmssNetworkInterfaceList.json's entries."""
    example = _example('VmssNetworkInterfaceList.json')
    base = copy.deepcopy(example['responses']['200']['body']['value'][0]) if example else {
        'properties': {'ipConfigurations': [{'properties': {}}]}}
    nic_id = f"{vm['id']}/networkInterfaces/nic1"
    base.update(id=nic_id, name='nic1')
    props = base['properties']
    props['virtualMachine'] = {'id': vm['id']}
    config = props['ipConfigurations'][0]
    config['id'] = f'{nic_id}/ipConfigurations/ip1'
    config['properties']['privateIPAddress'] = private_ip
    if public_ip_id:
        config['properties']['publicIPAddress'] = {'id': public_ip_id}
    else:
        config['properties'].pop('publicIPAddress', None)
    return base


def flexible_nic(vm, private_ip, with_vm_ref=True):
    nic_id = vm['properties']['networkProfile']['networkInterfaces'][0]['id']
    nic = {
        'id': nic_id, 'name': nic_id.rsplit('/', 1)[1],
        'properties': {
            'primary': True,
            'ipConfigurations': [{'id': f'{nic_id}/ipConfigurations/ipconfig1', 'name': 'ipconfig1',
                                  'properties': {'primary': True, 'privateIPAddress': private_ip}}],
        },
    }
    if with_vm_ref:
        nic['properties']['virtualMachine'] = {'id': vm['id']}
    return nic


def public_ip(pip_id, address, ip_config_id=None):
    pip = {'id': pip_id, 'name': pip_id.rsplit('/', 1)[1], 'properties': {'ipAddress': address}}
    if ip_config_id:
        pip['properties']['ipConfiguration'] = {'id': ip_config_id}
    return pip


def cluster_tags(role, pool, cluster='prod', consul_dc='dc1', nomad_region='global', nomad_dc='dc1'):
    return {
        'hashistack_cluster': cluster, 'hashistack_role': role, 'hashistack_pool': pool,
        'hashistack_consul_datacenter': consul_dc, 'hashistack_nomad_region': nomad_region,
        'hashistack_nomad_datacenter': nomad_dc,
    }


def cluster_raw():
    """A fetch result: 3 servers (westeurope, zones), 2 'web' clients in westeurope, 2 'batch' clients in
    northeurope (one deallocated, one with a public IP), and a Flexible 'edge' pool with 2 VMs."""
    servers = scale_set('hs-servers', 'westeurope', cluster_tags('server', 'servers'))
    web = scale_set('hs-web', 'westeurope', cluster_tags('client', 'web'))
    batch = scale_set('hs-batch', 'northeurope', cluster_tags('client', 'batch', nomad_dc='dc2'))
    edge = scale_set('hs-edge', 'westeurope', cluster_tags('client', 'edge-pool'), mode='Flexible')

    server_vms = [uniform_vm(servers, i, f'hs-server-{i}', zone=str(i + 1)) for i in range(3)]
    web_vms = [uniform_vm(web, i, f'hs-web-{i}', latest=(i == 0)) for i in (0, 1)]
    batch_vms = [uniform_vm(batch, 0, 'hs-batch-0'), uniform_vm(batch, 1, 'hs-batch-1', power='deallocated')]
    edge_vms = [flexible_vm(edge, 'hs-edge_a1b2c3', 'hs-edge-a'), flexible_vm(edge, 'hs-edge_d4e5f6', 'hs-edge-b')]
    # a VM of the same resource group that belongs to no scale set (must not show up)
    stray = flexible_vm(edge, 'standalone', 'standalone')
    stray['properties'].pop('virtualMachineScaleSet')

    batch_pip_id = f"{batch_vms[0]['id']}/networkInterfaces/nic1/ipConfigurations/ip1/publicIPAddresses/pub1"
    network = {
        'vmss:' + servers['id'].lower(): {
            'nics': [uniform_nic(vm, f'10.0.1.{4 + i}') for i, vm in enumerate(server_vms)], 'public_ips': []},
        'vmss:' + web['id'].lower(): {
            'nics': [uniform_nic(vm, f'10.0.2.{4 + i}') for i, vm in enumerate(web_vms)], 'public_ips': []},
        'vmss:' + batch['id'].lower(): {
            'nics': [uniform_nic(batch_vms[0], '10.1.2.4', batch_pip_id), uniform_nic(batch_vms[1], '10.1.2.5')],
            'public_ips': [public_ip(batch_pip_id, '20.1.2.3')]},
        f'rg:{SUB}/{RG}'.lower(): {
            'nics': [flexible_nic(edge_vms[0], '10.0.3.4'), flexible_nic(edge_vms[1], '10.0.3.5', with_vm_ref=False),
                     flexible_nic(stray, '10.0.3.9')],
            'public_ips': []},
    }
    return {
        'format': 1,
        'scale_sets': [
            {'subscription_id': SUB, 'scale_set': servers, 'instances': list(reversed(server_vms)),
             'network_key': 'vmss:' + servers['id'].lower()},
            {'subscription_id': SUB, 'scale_set': web, 'instances': web_vms, 'network_key': 'vmss:' + web['id'].lower()},
            {'subscription_id': SUB, 'scale_set': batch, 'instances': batch_vms,
             'network_key': 'vmss:' + batch['id'].lower()},
            {'subscription_id': SUB, 'scale_set': edge, 'instances': edge_vms + [stray],
             'network_key': f'rg:{SUB}/{RG}'.lower()},
        ],
        'network': network,
    }

"""Build scale-set fleets in the ARM emulator with the Azure SDK (shared by the inventory tests and the benchmark).

Everything goes through the collection's shared ``AzureSession`` with the emulator's environment (``arm_env``),
exactly like the inventory plugin authenticates.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor

from ansible.plugins.loader import init_plugin_loader

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..'))
COLLECTIONS = os.path.join(ROOT, '.cache', 'collections')
# Import the collection through Ansible's collection loader (as the unit tests do), never as a plain package,
# so every test module in the session sees the same, loader-managed ansible_collections package.
with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    init_plugin_loader([COLLECTIONS])

from ansible_collections.hashistack.azure.plugins.module_utils import _auth, _sdk  # noqa: E402
from azure.mgmt.compute import ComputeManagementClient  # noqa: E402
from azure.mgmt.network import NetworkManagementClient  # noqa: E402
from azure.mgmt.resource.resources import ResourceManagementClient  # noqa: E402

SSH_KEY = ('ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHashistackInventoryTestKeyOnlyNotARealKey000000 test@hashistack')
# Generous vCPU quotas so the fleets used here never hit the emulator's default limits.
QUOTAS = {loc: {'standardBSFamily': 5000, 'standardDSv3Family': 5000, 'cores': 10000}
          for loc in ('westeurope', 'northeurope', 'eastus', 'westus2')}


def cluster_tags(cluster, role, pool, consul_dc='dc1', nomad_region='global', nomad_dc='dc1'):
    return {
        'hashistack_cluster': cluster, 'hashistack_role': role, 'hashistack_pool': pool,
        'hashistack_consul_datacenter': consul_dc, 'hashistack_nomad_region': nomad_region,
        'hashistack_nomad_datacenter': nomad_dc,
    }


class Fleet:
    """Creates resource groups, networks and scale sets; waits for them."""

    def __init__(self, env, polling_interval=0.2):
        self.session = _auth.AzureSession({}, env=dict(env))
        self.sub = self.session.subscription_id
        kwargs = {'polling_interval': polling_interval}
        self.resources = self.session.client(ResourceManagementClient, **kwargs)
        self.compute = self.session.client(ComputeManagementClient, **kwargs)
        self.network = self.session.client(NetworkManagementClient, **kwargs)
        self._subnets = {}

    def close(self):
        for client in (self.resources, self.compute, self.network):
            client.close()

    def resource_group(self, name, location):
        self.resources.resource_groups.create_or_update(name, {'location': location})

    def subnet(self, rg, location, prefix):
        """A VNet named vnet-<location> with subnet 'nodes' (address prefix e.g. 10.1.0.0/16); returns the subnet id."""
        key = (rg, location)
        if key not in self._subnets:
            vnet = self.network.virtual_networks.begin_create_or_update(rg, f'vnet-{location}', {
                'location': location,
                'properties': {
                    'addressSpace': {'addressPrefixes': [prefix]},
                    'subnets': [{'name': 'nodes', 'properties': {'addressPrefix': prefix}}],
                },
            }).result()
            vnet = _sdk.to_dict(vnet)
            subnet = vnet['properties']['subnets'][0]
            self._subnets[key] = subnet.get('id') or f"{vnet['id']}/subnets/nodes"
        return self._subnets[key]

    def scale_set_body(self, name, location, capacity, tags, subnet_id, mode='Uniform', size='Standard_B1s', zones=None):
        profile = {
            'osProfile': {
                'computerNamePrefix': name,
                'adminUsername': 'azureuser',
                'linuxConfiguration': {
                    'disablePasswordAuthentication': True,
                    'ssh': {'publicKeys': [{'path': '/home/azureuser/.ssh/authorized_keys', 'keyData': SSH_KEY}]},
                },
            },
            'storageProfile': {
                'imageReference': {'publisher': 'Debian', 'offer': 'debian-12', 'sku': '12-gen2', 'version': 'latest'},
                'osDisk': {'createOption': 'FromImage', 'caching': 'ReadWrite',
                           'managedDisk': {'storageAccountType': 'Standard_LRS'}},
            },
            'networkProfile': {
                'networkInterfaceConfigurations': [{
                    'name': f'{name}-nic',
                    'properties': {
                        'primary': True,
                        'ipConfigurations': [{'name': 'ipconfig1', 'properties': {'subnet': {'id': subnet_id}}}],
                    },
                }],
            },
        }
        properties = {'orchestrationMode': mode, 'virtualMachineProfile': profile}
        if mode == 'Uniform':
            properties['upgradePolicy'] = {'mode': 'Manual'}
            properties['overprovision'] = False
        else:
            properties['platformFaultDomainCount'] = 1
            profile['networkProfile']['networkApiVersion'] = '2020-11-01'
        body = {'location': location, 'tags': dict(tags), 'sku': {'name': size, 'tier': 'Standard', 'capacity': capacity},
                'properties': properties}
        if zones:
            body['zones'] = list(zones)
        return body

    def create_scale_sets(self, rg, specs, workers=8):
        """specs: list of dicts(name, location, capacity, tags, subnet_id, mode?, size?, zones?). Waits for all."""
        def create(spec):
            spec = dict(spec)
            name = spec.pop('name')
            body = self.scale_set_body(name, **spec)
            return _sdk.to_dict(self.compute.virtual_machine_scale_sets.begin_create_or_update(rg, name, body).result())
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(create, specs))

    def delete_scale_set(self, rg, name):
        self.compute.virtual_machine_scale_sets.begin_delete(rg, name).result()

    def delete_resource_group(self, rg):
        self.resources.resource_groups.begin_delete(rg).result()


def build_cluster(fleet, rg='hs-inv', cluster='prod'):
    """The standard test cluster: 3 servers (westeurope), client pools 'web' (westeurope, 2) and 'batch'
    (northeurope, 3, Nomad datacenter dc2), a Flexible pool 'edge' (westeurope, 2), and an unrelated 'other'
    cluster scale set (westeurope, 1) that the tag filter must leave out."""
    fleet.resource_group(rg, 'westeurope')
    we = fleet.subnet(rg, 'westeurope', '10.10.0.0/16')
    ne = fleet.subnet(rg, 'northeurope', '10.20.0.0/16')
    specs = [
        dict(name='hs-servers', location='westeurope', capacity=3, subnet_id=we,
             tags=cluster_tags(cluster, 'server', 'servers')),
        dict(name='hs-web', location='westeurope', capacity=2, subnet_id=we, tags=cluster_tags(cluster, 'client', 'web')),
        dict(name='hs-batch', location='northeurope', capacity=3, subnet_id=ne,
             tags=cluster_tags(cluster, 'client', 'batch', nomad_dc='dc2')),
        dict(name='hs-edge', location='westeurope', capacity=2, subnet_id=we, mode='Flexible',
             tags=cluster_tags(cluster, 'client', 'edge')),
        dict(name='other-app', location='westeurope', capacity=1, subnet_id=we,
             tags=cluster_tags('other', 'client', 'misc')),
    ]
    return fleet.create_scale_sets(rg, specs)

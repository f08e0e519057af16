#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) hashistack.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: virtual_network_peering
short_description: Peer two Azure virtual networks in both directions
version_added: 0.1.0
description:
  - Creates, updates or deletes the peering between two virtual networks, both directions in one task,
    for example to connect a client pool in another region to the servers' network.
  - Sends no write request when both peerings already match.
options:
  virtual_network:
    description: ARM id of the local virtual network.
    type: str
    required: true
  remote_virtual_network:
    description: ARM id of the remote virtual network (may be in another resource group, region or subscription).
    type: str
    required: true
  name:
    description: Name of the peering on the local network. Defaults to C(<local>-to-<remote>).
    type: str
  remote_name:
    description: Name of the peering on the remote network. Defaults to C(<remote>-to-<local>).
    type: str
  allow_virtual_network_access:
    description: Let the networks reach each other.
    type: bool
    default: true
  allow_forwarded_traffic:
    description: Accept traffic forwarded by appliances in the peer network.
    type: bool
    default: false
  allow_gateway_transit:
    description: Let the remote network use the local network's gateway (local side only).
    type: bool
    default: false
  use_remote_gateways:
    description: Use the remote network's gateway (local side only).
    type: bool
    default: false
  timeout:
    default: 600
extends_documentation_fragment:
  - hashistack.azure.azure
  - hashistack.azure.azure.state
  - hashistack.azure.azure.wait
  - hashistack.azure.azure.attributes
  - hashistack.azure.azure.full_support
author:
  - hashistack.azure maintainers (@hashistack)
'''

EXAMPLES = r'''
- name: Connect the eastus client pool network with the servers' network
  hashistack.azure.virtual_network_peering:
    virtual_network: "{{ servers_vnet.virtual_network.id }}"
    remote_virtual_network: "{{ eastus_vnet.virtual_network.id }}"
    allow_forwarded_traffic: true
'''

RETURN = r'''
peerings:
  description: Both peerings after the task (empty list when absent).
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: ARM id of the peering.
      type: str
      sample: /subscriptions/0000/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/a/virtualNetworkPeerings/a-to-b
    name:
      description: Peering name.
      type: str
      sample: a-to-b
    virtual_network:
      description: Id of the network that holds the peering.
      type: str
      sample: /subscriptions/0000/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/a
    remote_virtual_network:
      description: Id of the peer network.
      type: str
      sample: /subscriptions/0000/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/b
    allow_virtual_network_access:
      description: Access allowed.
      type: bool
      sample: true
    allow_forwarded_traffic:
      description: Forwarded traffic allowed.
      type: bool
      sample: false
    peering_state:
      description: C(Initiated) until both sides exist, then C(Connected).
      type: str
      sample: Connected
changes:
  description: Human readable list of the changes made (or that would be made in check mode).
  returned: always
  type: list
  elements: str
  sample: ["a-to-b: create", "b-to-a: create"]
'''

from ansible_collections.hashistack.azure.plugins.module_utils._ids import parse_resource_id, same_id
from ansible_collections.hashistack.azure.plugins.module_utils._lifecycle import AzureResource
from ansible_collections.hashistack.azure.plugins.module_utils._module import STATE_ARGSPEC, AzureModule, wait_argspec


FIELDS = (
    ('allow_virtual_network_access', 'allowVirtualNetworkAccess'),
    ('allow_forwarded_traffic', 'allowForwardedTraffic'),
    ('allow_gateway_transit', 'allowGatewayTransit'),
    ('use_remote_gateways', 'useRemoteGateways'),
)


class Peering(AzureResource):
    """One direction: the peering on ``vnet_id`` towards ``remote_id``."""

    noun = 'peering'
    client_name = 'network'
    immutable = (('remote_virtual_network', 'ci'),)
    immutable_hints = dict(remote_virtual_network='a peering cannot be re-pointed; delete it or choose another name')

    def __init__(self, module, vnet_id, remote_id, name, wanted):
        self.vnet = parse_resource_id(vnet_id)
        self.vnet_id = vnet_id
        self.remote_id = remote_id
        self.wanted = wanted
        super().__init__(module, name=name, resource_group=self.vnet['resource_group'])

    def client_options(self):
        return dict(subscription_id=self.vnet.get('subscription'))

    def describe(self):
        return 'peering %s on virtual network %s' % (self.name, self.vnet['name'])

    def read(self):
        return self.get(self.client.virtual_network_peerings.get, self.resource_group, self.vnet['name'], self.name)

    def to_model(self, rest):
        if rest is None:
            return None
        props = rest.get('properties') or {}
        model = dict(id=rest.get('id'), name=rest.get('name'), virtual_network=self.vnet_id,
                     remote_virtual_network=(props.get('remoteVirtualNetwork') or {}).get('id'),
                     peering_state=props.get('peeringState'))
        for key, rest_key in FIELDS:
            model[key] = bool(props.get(rest_key, False))
        return model

    def desired(self):
        return dict(self.wanted, name=self.name, virtual_network=self.vnet_id, remote_virtual_network=self.remote_id)

    def compare(self, d, current, desired):
        for key, _rest_key in FIELDS:
            d.compare(key, desired[key])

    def put(self, verb, model):
        body = dict(properties=dict(remoteVirtualNetwork=dict(id=self.remote_id), **dict((r, model[k]) for k, r in FIELDS)))
        return self.lro(verb, lambda: self.client.virtual_network_peerings.begin_create_or_update(
            self.resource_group, self.vnet['name'], self.name, body))

    def delete(self, current):
        self.lro('deleting', lambda: self.client.virtual_network_peerings.begin_delete(self.resource_group, self.vnet['name'], self.name))


def vnet_parts(m, vnet_id, option):
    parts = parse_resource_id(vnet_id)
    if not parts.get('resource_group') or (parts.get('type') or '').lower() != 'virtualnetworks':
        m.fail('%s must be a virtual network id like /subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.Network/'
               'virtualNetworks/<name>, got %r' % (option, vnet_id))
    return parts


def main():
    spec = dict(
        virtual_network=dict(type='str', required=True),
        remote_virtual_network=dict(type='str', required=True),
        name=dict(type='str'),
        remote_name=dict(type='str'),
        allow_virtual_network_access=dict(type='bool', default=True),
        allow_forwarded_traffic=dict(type='bool', default=False),
        allow_gateway_transit=dict(type='bool', default=False),
        use_remote_gateways=dict(type='bool', default=False),
    )
    spec.update(STATE_ARGSPEC)
    spec.update(wait_argspec(600))
    m = AzureModule(spec)
    p = m.params
    local = vnet_parts(m, p['virtual_network'], 'virtual_network')['name']
    remote = vnet_parts(m, p['remote_virtual_network'], 'remote_virtual_network')['name']
    if same_id(p['virtual_network'], p['remote_virtual_network']):
        m.fail('virtual_network and remote_virtual_network are the same network %s' % p['virtual_network'])
    access = dict((k, p[k]) for k in ('allow_virtual_network_access', 'allow_forwarded_traffic'))
    sides = [  # gateway settings apply to the local side only
        Peering(m, p['virtual_network'], p['remote_virtual_network'], p['name'] or '%s-to-%s' % (local, remote),
                dict(access, allow_gateway_transit=p['allow_gateway_transit'], use_remote_gateways=p['use_remote_gateways'])),
        Peering(m, p['remote_virtual_network'], p['virtual_network'], p['remote_name'] or '%s-to-%s' % (remote, local),
                dict(access, allow_gateway_transit=False, use_remote_gateways=False)),
    ]
    for side in sides:   # read both before changing either
        side.current()
    results = [side.apply() for side in sides]
    changed = any(r['changed'] for r in results)
    peerings = [r['model'] for r in results]
    if p['state'] == 'present' and changed and not m.check_mode and p['wait']:
        # The first side reports Initiated until the second exists; read the final states.
        peerings = [side.to_model(side.read()) for side in sides]
    m.exit(changed=changed, peerings=[x for x in peerings if x],
           changes=['%s: %s' % (side.name, c) for side, r in zip(sides, results) for c in r['changes']],
           diff=dict(before=[r['diff']['before'] for r in results if r['diff']['before']],
                     after=[r['diff']['after'] for r in results if r['diff']['after']]))


if __name__ == '__main__':
    main()

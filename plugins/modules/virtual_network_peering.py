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
  state:
    description: Whether the peerings should exist.
    type: str
    choices: [present, absent]
    default: present
  wait:
    description: Wait for each operation to finish.
    type: bool
    default: true
  timeout:
    description: Seconds to wait for each operation.
    type: int
    default: 600
extends_documentation_fragment:
  - hashistack.azure.azure
  - hashistack.azure.azure.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
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

from ansible_collections.hashistack.azure.plugins.module_utils._azure import AzureModule, parse_resource_id, to_dict
from ansible_collections.hashistack.azure.plugins.module_utils._diff import values_equal
from ansible_collections.hashistack.azure.plugins.module_utils._network import same_id


FIELDS = (
    ('allow_virtual_network_access', 'allowVirtualNetworkAccess'),
    ('allow_forwarded_traffic', 'allowForwardedTraffic'),
    ('allow_gateway_transit', 'allowGatewayTransit'),
    ('use_remote_gateways', 'useRemoteGateways'),
)


def model_from_rest(rest, vnet_id):
    if rest is None:
        return None
    props = rest.get('properties') or {}
    model = dict(id=rest.get('id'), name=rest.get('name'), virtual_network=vnet_id,
                 remote_virtual_network=(props.get('remoteVirtualNetwork') or {}).get('id'),
                 peering_state=props.get('peeringState'))
    for key, rest_key in FIELDS:
        model[key] = bool(props.get(rest_key, False))
    return model


def split_vnet(m, vnet_id, option):
    parts = parse_resource_id(vnet_id)
    if not parts.get('resource_group') or (parts.get('type') or '').lower() != 'virtualnetworks':
        m.fail('%s must be a virtual network id like /subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.Network/'
               'virtualNetworks/<name>, got %r' % (option, vnet_id))
    return parts


def main():
    m = AzureModule(dict(
        virtual_network=dict(type='str', required=True),
        remote_virtual_network=dict(type='str', required=True),
        name=dict(type='str'),
        remote_name=dict(type='str'),
        allow_virtual_network_access=dict(type='bool', default=True),
        allow_forwarded_traffic=dict(type='bool', default=False),
        allow_gateway_transit=dict(type='bool', default=False),
        use_remote_gateways=dict(type='bool', default=False),
        state=dict(type='str', choices=['present', 'absent'], default='present'),
        wait=dict(type='bool', default=True),
        timeout=dict(type='int', default=600),
    ))
    p = m.params
    local = split_vnet(m, p['virtual_network'], 'virtual_network')
    remote = split_vnet(m, p['remote_virtual_network'], 'remote_virtual_network')
    if same_id(p['virtual_network'], p['remote_virtual_network']):
        m.fail('virtual_network and remote_virtual_network are the same network %s' % p['virtual_network'])
    sides = [
        dict(vnet=local, vnet_id=p['virtual_network'], remote_id=p['remote_virtual_network'],
             name=p['name'] or '%s-to-%s' % (local['name'], remote['name']),
             desired=dict((k, p[k]) for k, _r in FIELDS)),
        dict(vnet=remote, vnet_id=p['remote_virtual_network'], remote_id=p['virtual_network'],
             name=p['remote_name'] or '%s-to-%s' % (remote['name'], local['name']),
             desired=dict(allow_virtual_network_access=p['allow_virtual_network_access'],
                          allow_forwarded_traffic=p['allow_forwarded_traffic'],
                          allow_gateway_transit=False, use_remote_gateways=False)),
    ]
    before, after, changes, results = [], [], [], []
    changed = False
    for side in sides:
        sub = side['vnet'].get('subscription')
        client = m.client('network', subscription_id=sub)
        side['client'] = client
        what = 'peering %s on virtual network %s' % (side['name'], side['vnet']['name'])
        side['what'] = what
        side['current'] = model_from_rest(to_dict(m.get('reading ' + what, client.virtual_network_peerings.get,
                                                        side['vnet']['resource_group'], side['vnet']['name'], side['name'])),
                                          side['vnet_id'])
    for side in sides:
        current = side['current']
        rg, vnet, name, client, what = side['vnet']['resource_group'], side['vnet']['name'], side['name'], side['client'], side['what']
        if p['state'] == 'absent':
            if current is None:
                continue
            before.append(current)
            changes.append('%s: delete' % name)
            changed = True
            if not m.check_mode:
                m.lro('deleting ' + what, lambda: client.virtual_network_peerings.begin_delete(rg, vnet, name), p['timeout'], wait=p['wait'])
            continue
        desired = dict(side['desired'], remote_virtual_network=side['remote_id'])
        cur_cmp = None
        if current is not None:
            before.append(current)
            cur_cmp = dict((k, current[k]) for k, _r in FIELDS)
            cur_cmp['remote_virtual_network'] = (current['remote_virtual_network'] or '').lower()
        want_cmp = dict(side['desired'], remote_virtual_network=side['remote_id'].lower())
        if cur_cmp is not None and values_equal(want_cmp, cur_cmp):
            after.append(current)
            results.append(current)
            continue
        if current is not None and not same_id(current['remote_virtual_network'], side['remote_id']):
            m.fail('%s already peers with %s, not %s: a peering cannot be re-pointed. Delete it or choose another name.'
                   % (what, current['remote_virtual_network'], side['remote_id']))
        changed = True
        new = dict(current or dict(name=name, virtual_network=side['vnet_id'], peering_state=None), **desired)
        after.append(new)
        if current is None:
            changes.append('%s: create' % name)
        else:
            changes.extend('%s: %s %s -> %s' % (name, k, current[k], desired[k]) for k, _r in FIELDS if current[k] != desired[k])
        if m.check_mode:
            results.append(new)
            continue
        body = dict(properties=dict(remoteVirtualNetwork=dict(id=side['remote_id']), **dict((r, desired[k]) for k, r in FIELDS)))
        res = m.lro(('creating ' if current is None else 'updating ') + what,
                    lambda: client.virtual_network_peerings.begin_create_or_update(rg, vnet, name, body), p['timeout'], wait=p['wait'])
        results.append(model_from_rest(to_dict(res), side['vnet_id']) or new)
    if p['state'] == 'present' and changed and not m.check_mode and p['wait']:
        # The first side reports Initiated until the second exists; read the final states.
        results = [model_from_rest(to_dict(m.get('reading ' + s['what'], s['client'].virtual_network_peerings.get,
                                                 s['vnet']['resource_group'], s['vnet']['name'], s['name'])), s['vnet_id'])
                   for s in sides]
    m.exit(changed=changed, peerings=[r for r in results if r], changes=changes, diff=dict(before=before, after=after))


if __name__ == '__main__':
    main()

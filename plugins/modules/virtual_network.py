#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) hashistack.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: virtual_network
short_description: Manage an Azure virtual network and its subnets
version_added: 0.1.0
description:
  - Create, update or delete one virtual network with its address space and subnets.
  - All prefixes are validated before any request is sent to Azure; host bits, overlaps,
    subnets outside the address space and duplicate names are reported together.
  - Sends no write request when the network already matches.
options:
  resource_group:
    description: Resource group of the virtual network.
    type: str
    required: true
  name:
    description: Name of the virtual network.
    type: str
    required: true
  location:
    description:
      - Location. Defaults to the location of the resource group when creating.
      - Cannot change for an existing network.
    type: str
  address_prefixes:
    description:
      - The address space, a list of CIDR prefixes such as V(10.10.0.0/16). Required to create.
      - Compared as a set; order does not matter.
    type: list
    elements: str
  subnets:
    description:
      - Subnets of the network. When not set, subnets are left as they are.
    type: list
    elements: dict
    suboptions:
      name:
        description: Subnet name.
        type: str
        required: true
      address_prefix:
        description: CIDR prefix inside O(address_prefixes).
        type: str
        required: true
      network_security_group:
        description: Network security group to associate, by id or by name in O(resource_group).
        type: str
  purge_subnets:
    description:
      - Delete subnets that exist in Azure but are not listed in O(subnets).
      - Ignored when O(subnets) is not set.
    type: bool
    default: false
  state:
    description: Whether the network should exist.
    type: str
    choices: [present, absent]
    default: present
  wait:
    description: Wait for the create, update or delete to finish.
    type: bool
    default: true
  timeout:
    description: Seconds to wait.
    type: int
    default: 600
extends_documentation_fragment:
  - hashistack.azure.azure
  - hashistack.azure.azure.tags
  - hashistack.azure.azure.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
requirements:
  - netaddr
author:
  - hashistack.azure maintainers (@hashistack)
'''

EXAMPLES = r'''
- name: Network for the servers and a client pool
  hashistack.azure.virtual_network:
    resource_group: hashistack-prod
    name: hashistack-westeurope
    location: westeurope
    address_prefixes: [10.10.0.0/16]
    subnets:
      - name: servers
        address_prefix: 10.10.1.0/24
        network_security_group: hashistack-nodes
      - name: clients
        address_prefix: 10.10.2.0/23
'''

RETURN = r'''
virtual_network:
  description: The network after the task (empty when absent).
  returned: always
  type: dict
  contains:
    id:
      description: ARM id.
      type: str
      sample: /subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/vnet
    name:
      description: Name.
      type: str
      sample: hashistack-westeurope
    location:
      description: Location.
      type: str
      sample: westeurope
    address_prefixes:
      description: Address space.
      type: list
      elements: str
      sample: [10.10.0.0/16]
    subnets:
      description: Subnets with C(name), C(address_prefix), C(network_security_group) and C(id).
      type: list
      elements: dict
      sample: [{name: servers, address_prefix: 10.10.1.0/24, network_security_group: null, id: /subscriptions/.../subnets/servers}]
    tags:
      description: Tags.
      type: dict
      sample: {}
changes:
  description: Human readable list of the changes made (or that would be made in check mode).
  returned: always
  type: list
  elements: str
  sample: ["address_prefixes: [\"10.10.0.0/16\"] -> [\"10.10.0.0/16\", \"10.20.0.0/16\"]"]
'''

from ansible.module_utils.basic import missing_required_lib
from ansible_collections.hashistack.azure.plugins.module_utils._azure import AzureModule, to_dict
from ansible_collections.hashistack.azure.plugins.module_utils._diff import ModelDiff, merge_tags
from ansible_collections.hashistack.azure.plugins.module_utils._network import (
    HAS_NETADDR, NETADDR_IMPORT_ERROR, nsg_id, validate_address_space, validate_prefix)


def subnet_from_rest(rest):
    props = rest.get('properties') or {}
    prefix = props.get('addressPrefix') or (props.get('addressPrefixes') or [None])[0]
    return dict(
        name=rest.get('name'),
        address_prefix=prefix,
        network_security_group=(props.get('networkSecurityGroup') or {}).get('id'),
        id=rest.get('id'),
    )


def model_from_rest(rest):
    if rest is None:
        return None
    props = rest.get('properties') or {}
    return dict(
        id=rest.get('id'),
        name=rest.get('name'),
        location=rest.get('location'),
        address_prefixes=list((props.get('addressSpace') or {}).get('addressPrefixes') or []),
        subnets=sorted((subnet_from_rest(s) for s in props.get('subnets') or []), key=lambda s: s['name']),
        tags=rest.get('tags') or {},
    )


def comparable_subnets(subnets):
    return sorted((dict(name=s['name'], address_prefix=s['address_prefix'],
                        network_security_group=(s.get('network_security_group') or '').lower() or None) for s in subnets),
                  key=lambda s: s['name'])


def body_from_model(model):
    subnets = []
    for s in model['subnets']:
        props = dict(addressPrefix=s['address_prefix'])
        if s.get('network_security_group'):
            props['networkSecurityGroup'] = dict(id=s['network_security_group'])
        subnets.append(dict(name=s['name'], properties=props))
    return dict(location=model['location'], tags=model['tags'],
                properties=dict(addressSpace=dict(addressPrefixes=model['address_prefixes']), subnets=subnets))


def main():
    m = AzureModule(dict(
        resource_group=dict(type='str', required=True),
        name=dict(type='str', required=True),
        location=dict(type='str'),
        address_prefixes=dict(type='list', elements='str'),
        subnets=dict(type='list', elements='dict', options=dict(
            name=dict(type='str', required=True),
            address_prefix=dict(type='str', required=True),
            network_security_group=dict(type='str'),
        )),
        purge_subnets=dict(type='bool', default=False),
        state=dict(type='str', choices=['present', 'absent'], default='present'),
        tags=dict(type='dict'),
        purge_tags=dict(type='bool', default=False),
        wait=dict(type='bool', default=True),
        timeout=dict(type='int', default=600),
    ))
    p = m.params
    if not HAS_NETADDR:
        m.fail(missing_required_lib('netaddr'), exception=NETADDR_IMPORT_ERROR)
    rg, name = p['resource_group'], p['name']
    what = 'virtual network %s in resource group %s' % (name, rg)

    # Validate everything before talking to Azure.
    if p['state'] == 'present':
        errors = []
        prefixes = None
        if p['address_prefixes'] is not None:
            prefixes = []
            for prefix in p['address_prefixes']:
                try:
                    prefixes.append(validate_prefix(prefix, 'address_prefixes'))
                except ValueError as exc:
                    errors.append(str(exc))
        errors.extend(validate_address_space(p['address_prefixes'] if prefixes is not None else [], p['subnets'] or []))
        if errors:
            m.fail('Invalid address plan for %s: %s' % (what, '; '.join(sorted(set(errors)))))

    client = m.client('network')
    current = model_from_rest(to_dict(m.get('reading ' + what, client.virtual_networks.get, rg, name)))
    d = ModelDiff(current)

    if p['state'] == 'absent':
        if current is None:
            m.exit(changed=False, virtual_network={}, changes=[], diff=d.diff)
        d.mark_absent()
        if not m.check_mode:
            m.lro('deleting ' + what, lambda: client.virtual_networks.begin_delete(rg, name), p['timeout'], wait=p['wait'])
        m.exit(changed=True, virtual_network={}, changes=d.changes, diff=d.diff)

    desired_subnets = None
    if p['subnets'] is not None:
        desired_subnets = [dict(name=s['name'], address_prefix=validate_prefix(s['address_prefix'], 'subnet'),
                                network_security_group=nsg_id(s['network_security_group'], m.subscription_id, rg))
                           for s in p['subnets']]

    if current is None:
        if not p['address_prefixes']:
            m.fail('address_prefixes is required to create %s' % what)
        location = p['location']
        if not location:
            rclient = m.client('resource')
            group = to_dict(m.get('reading resource group %s' % rg, rclient.resource_groups.get, rg))
            if group is None:
                m.fail('Resource group %s does not exist: create it first (hashistack.azure.resource_group) before %s.' % (rg, what))
            location = group['location']
        desired = dict(name=name, location=location, address_prefixes=[validate_prefix(x, 'address_prefixes') for x in p['address_prefixes']],
                       subnets=sorted(desired_subnets or [], key=lambda s: s['name']), tags=p['tags'] or {})
        d.set_all(desired)
        result = d.after
        if not m.check_mode:
            result = model_from_rest(to_dict(m.lro('creating ' + what, lambda: client.virtual_networks.begin_create_or_update(
                rg, name, body_from_model(desired)), p['timeout'], wait=p['wait']))) or d.after
        m.exit(changed=True, virtual_network=result, changes=d.changes, diff=d.diff)

    if p['location'] and p['location'].replace(' ', '').lower() != (current['location'] or '').lower():
        m.fail('Cannot move %s from %s to %s: location is immutable. Delete the network first or use another name.'
               % (what, current['location'], p['location']))
    if p['address_prefixes'] is None and p['subnets']:
        errors = validate_address_space(current['address_prefixes'], p['subnets'])
        if errors:
            m.fail('Invalid address plan for %s: %s' % (what, '; '.join(sorted(set(errors)))))
    if p['address_prefixes'] is not None:
        d.compare('address_prefixes', [validate_prefix(x, 'address_prefixes') for x in p['address_prefixes']], kind='set')
    if desired_subnets is not None:
        want = comparable_subnets(desired_subnets)
        have = comparable_subnets(current['subnets'])
        if not p['purge_subnets']:
            names = set(s['name'] for s in want)
            have_listed = [s for s in have if s['name'] in names]
            if want != have_listed:
                keep = [s for s in current['subnets'] if s['name'] not in names]
                d.compare('subnets', sorted(desired_subnets + keep, key=lambda s: s['name']),
                          merge=lambda w, h: w)
        elif want != have:
            d.compare('subnets', sorted(desired_subnets, key=lambda s: s['name']))
    d.compare('tags', p['tags'], kind='dict' if p['purge_tags'] else 'subset',
              merge=lambda want, have: merge_tags(want, have, p['purge_tags']))
    result = d.after
    if d.changed and not m.check_mode:
        result = model_from_rest(to_dict(m.lro('updating ' + what, lambda: client.virtual_networks.begin_create_or_update(
            rg, name, body_from_model(d.after)), p['timeout'], wait=p['wait']))) or d.after
    m.exit(changed=d.changed, virtual_network=result, changes=d.changes, diff=d.diff)


if __name__ == '__main__':
    main()

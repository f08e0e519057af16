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
  timeout:
    default: 600
extends_documentation_fragment:
  - hashistack.azure.azure
  - hashistack.azure.azure.state
  - hashistack.azure.azure.wait
  - hashistack.azure.azure.tags
  - hashistack.azure.azure.attributes
  - hashistack.azure.azure.full_support
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

from ansible_collections.hashistack.azure.plugins.module_utils._lifecycle import AzureResource
from ansible_collections.hashistack.azure.plugins.module_utils._network import (
    require_netaddr, nsg_id, validate_address_space, validate_prefix)


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


class VirtualNetwork(AzureResource):
    noun = 'virtual network'
    client_name = 'network'
    result_key = 'virtual_network'
    argument_spec = dict(
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
    )
    default_timeout = 600
    manages_tags = True
    location_from_resource_group = True
    required_to_create = ('address_prefixes',)
    immutable = (('location', 'location'),)

    def validate(self):
        require_netaddr(self.m)
        return sorted(set(validate_address_space(self.params['address_prefixes'] or [], self.params['subnets'] or [])))

    def read(self):
        return self.get(self.client.virtual_networks.get, self.resource_group, self.name)

    def to_model(self, rest):
        return model_from_rest(rest)

    def desired(self):
        p = self.params
        subnets = None
        if p['subnets'] is not None:
            subnets = sorted((dict(name=s['name'], address_prefix=validate_prefix(s['address_prefix'], 'subnet'),
                                   network_security_group=nsg_id(s['network_security_group'], self.m.subscription_id, self.resource_group))
                              for s in p['subnets']), key=lambda s: s['name'])
        prefixes = None
        if p['address_prefixes'] is not None:
            prefixes = [validate_prefix(x, 'address_prefixes') for x in p['address_prefixes']]
        return dict(name=self.name, location=p['location'], address_prefixes=prefixes, subnets=subnets, tags=p['tags'])

    def prepare_create(self, model):
        model['subnets'] = model['subnets'] or []
        return model

    def compare(self, d, current, desired):
        p = self.params
        if desired['address_prefixes'] is None and p['subnets']:
            errors = validate_address_space(current['address_prefixes'], p['subnets'])
            if errors:
                return sorted(set(errors))
        d.compare('address_prefixes', desired['address_prefixes'], kind='set')
        if desired['subnets'] is not None:
            want = comparable_subnets(desired['subnets'])
            have = comparable_subnets(current['subnets'])
            if not p['purge_subnets']:
                names = set(s['name'] for s in want)
                if want != [s for s in have if s['name'] in names]:
                    keep = [s for s in current['subnets'] if s['name'] not in names]
                    d.compare('subnets', sorted(desired['subnets'] + keep, key=lambda s: s['name']))
            elif want != have:
                d.compare('subnets', desired['subnets'])
        self.compare_tags(d, desired)
        return []

    def put(self, verb, model):
        return self.lro(verb, lambda: self.client.virtual_networks.begin_create_or_update(
            self.resource_group, self.name, body_from_model(model)))

    def delete(self, current):
        self.lro('deleting', lambda: self.client.virtual_networks.begin_delete(self.resource_group, self.name))


def main():
    VirtualNetwork.main()


if __name__ == '__main__':
    main()

#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) hashistack.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: vmss_info
short_description: Read Azure virtual machine scale sets and their instances
version_added: 0.1.0
description:
  - Returns one scale set, the scale sets of a resource group, or all scale sets of the subscription.
  - With O(include_instances=true), also their instances with private IP addresses and power state,
    using two list calls per scale set whatever the number of instances - for a Uniform scale set its instances
    (with instance view) and its network interfaces; for a Flexible scale set its VMs (filtered by Azure) and the
    network interfaces of its resource group, listed once for all Flexible scale sets there.
  - Reads scale sets and instances exactly like the C(hashistack.azure.vmss) inventory plugin (the same requests,
    power states and addresses).
options:
  resource_group:
    description: Resource group. Without it, all scale sets of the subscription are listed.
    type: str
  name:
    description: Name of one scale set (needs O(resource_group)).
    type: str
  include_instances:
    description: Include the instances of each scale set.
    type: bool
    default: false
extends_documentation_fragment:
  - hashistack.azure.azure
  - hashistack.azure.azure.tag_filter
  - hashistack.azure.azure.attributes
  - hashistack.azure.azure.info_module
author:
  - hashistack.azure maintainers (@hashistack)
'''

EXAMPLES = r'''
- name: Instances of the server scale set
  hashistack.azure.vmss_info:
    resource_group: hashistack-prod
    name: servers
    include_instances: true
  register: servers

- name: Their addresses
  ansible.builtin.debug:
    msg: "{{ servers.scale_sets[0].instances | map(attribute='private_ip') | list }}"
'''

RETURN = r'''
scale_sets:
  description: Scale sets found (empty list when none), sorted by resource group and name.
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: ARM id.
      type: str
      sample: /subscriptions/0000/resourceGroups/rg/providers/Microsoft.Compute/virtualMachineScaleSets/servers
    name:
      description: Name.
      type: str
      sample: servers
    resource_group:
      description: Resource group.
      type: str
      sample: hashistack-prod
    location:
      description: Location.
      type: str
      sample: westeurope
    vm_size:
      description: VM size.
      type: str
      sample: Standard_D2s_v3
    capacity:
      description: Instance count in the model.
      type: int
      sample: 3
    tags:
      description: Tags.
      type: dict
      sample: {role: server}
    principal_id:
      description: Object id of the system-assigned identity.
      type: str
      sample: 5b1f5a2c-0000-0000-0000-000000000000
    instances:
      description: Instances, when O(include_instances=true).
      type: list
      elements: dict
      returned: when include_instances
      sample: [{instance_id: '0', computer_name: servers000000, private_ip: 10.10.1.4, power_state: running, latest_model_applied: true}]
      contains:
        id: {description: ARM id of the instance (a VM id for Flexible scale sets)., type: str}
        name: {description: ARM name., type: str}
        instance_id: {description: Scale-set instance id; the VM name for Flexible scale sets., type: str}
        computer_name: {description: Host name of the instance., type: str}
        vm_id: {description: Unique VM id., type: str}
        private_ip: {description: Primary private address., type: str}
        private_ips: {description: Every private address (primary first)., type: list, elements: str}
        public_ip: {description: Primary public address when the NIC listing carries one., type: str}
        public_ips: {description: Every public address the NIC listing carries., type: list, elements: str}
        power_state:
          description: Suffix of Azure's C(PowerState/...) status in lower case, for example V(running) or V(deallocated); V(unknown) when Azure reports none.
          type: str
        provisioning_state: {description: Provisioning state., type: str}
        latest_model_applied: {description: Whether the instance runs the scale set's latest model (V(null) for Flexible scale sets)., type: bool}
        protect_from_scale_in: {description: Scale-in protection., type: bool}
        protect_from_scale_set_actions: {description: Protection from scale set actions., type: bool}
        zone: {description: Availability zone., type: str}
        location: {description: Location., type: str}
        vm_size: {description: VM size., type: str}
        tags: {description: The instance's own tags., type: dict}
        vmss_name: {description: Scale set name., type: str}
        vmss_id: {description: Scale set id., type: str}
        orchestration_mode: {description: V(Uniform) or V(Flexible)., type: str}
        subscription_id: {description: Subscription., type: str}
        resource_group: {description: Resource group., type: str}
'''

from ansible_collections.hashistack.azure.plugins.module_utils._ids import parse_resource_id
from ansible_collections.hashistack.azure.plugins.module_utils._module import AzureModule
from ansible_collections.hashistack.azure.plugins.module_utils._vmss import model_from_rest
from ansible_collections.hashistack.azure.plugins.module_utils._vmss_readers import (
    index_nics, instance_from_rest, instances_request, members, network_key, network_requests, scale_set_request,
    scale_sets_request, tags_match)


def read_scale_sets(m, rest, sub):
    p = m.params
    if p['name']:
        request = scale_set_request(sub, p['resource_group'], p['name'])
        found = m.get(request.what, rest.get, request.path, request.params)
        return [found] if found is not None else []
    request = scale_sets_request(sub, p['resource_group'])
    return m.call(request.what, rest.list, request.path, request.params)


def read_instances(m, rest, sub, scale_set, networks):
    """The instances of one scale set; ``networks`` keeps the NIC listings shared by Flexible sets of a resource group."""
    request = instances_request(sub, scale_set)
    vms = m.call(request.what, rest.list, request.path, request.params)
    key = network_key(sub, scale_set)
    if key not in networks:
        listed = dict((kind, m.call(r.what, rest.list, r.path, r.params)) for kind, r in network_requests(sub, scale_set))
        networks[key] = index_nics(listed['nics'])
    return [instance_from_rest(vm, networks[key], scale_set) for vm in members(scale_set, vms)]


def main():
    m = AzureModule(dict(
        resource_group=dict(type='str'),
        name=dict(type='str'),
        tags=dict(type='dict', default={}),
        include_instances=dict(type='bool', default=False),
    ), required_by=dict(name='resource_group'))
    sub = m.subscription_id
    rest = m.rest()
    models = []
    networks = {}
    for scale_set in read_scale_sets(m, rest, sub):
        if not tags_match(scale_set.get('tags'), m.params['tags']):
            continue
        model = model_from_rest(scale_set)
        model['resource_group'] = parse_resource_id(model['id']).get('resource_group')
        if m.params['include_instances']:
            model['instances'] = read_instances(m, rest, sub, scale_set, networks)
        models.append(model)
    models.sort(key=lambda x: ((x['resource_group'] or '').lower(), x['name']))
    m.exit(changed=False, scale_sets=models)


if __name__ == '__main__':
    main()

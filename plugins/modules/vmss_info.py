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
    using two list calls per scale set (instances with instance view, and the scale set's NICs) whatever
    the number of instances.
options:
  resource_group:
    description: Resource group. Without it, all scale sets of the subscription are listed.
    type: str
  name:
    description: Name of one scale set (needs O(resource_group)).
    type: str
  tags:
    description: Only return scale sets that carry all these tags.
    type: dict
  include_instances:
    description: Include the instances of each scale set.
    type: bool
    default: false
extends_documentation_fragment:
  - hashistack.azure.azure
  - hashistack.azure.azure.attributes
attributes:
  check_mode:
    support: full
    details: This module never changes anything.
  diff_mode:
    support: none
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
'''

from ansible_collections.hashistack.azure.plugins.module_utils._azure import AzureModule, parse_resource_id, to_dict
from ansible_collections.hashistack.azure.plugins.module_utils._vmss import instance_from_rest, model_from_rest, nic_ips_by_vm


def list_instances(m, compute, network, rg, model):
    name = model['name']
    what = 'instances of scale set %s in resource group %s' % (name, rg)
    if model['orchestration_mode'] == 'Flexible':
        vms = m.call('listing ' + what, lambda: [to_dict(v) for v in compute.virtual_machines.list(rg, expand='instanceView')])
        vms = [v for v in vms if (((v.get('properties') or {}).get('virtualMachineScaleSet') or {}).get('id') or '').lower() == model['id'].lower()]
        for vm in vms:
            vm.setdefault('instanceId', vm.get('name'))
        nics = m.call('listing network interfaces for ' + what, lambda: [to_dict(n) for n in network.network_interfaces.list(rg)])
    else:
        vms = m.call('listing ' + what, lambda: [to_dict(v) for v in compute.virtual_machine_scale_set_vms.list(rg, name, expand='instanceView')])
        nics = m.call('listing network interfaces for ' + what,
                      lambda: [to_dict(n) for n in network.network_interfaces.list_virtual_machine_scale_set_network_interfaces(rg, name)])
    ips = nic_ips_by_vm(nics)
    instances = [instance_from_rest(vm, ips) for vm in vms]
    return sorted(instances, key=lambda i: (len(str(i['instance_id'])), str(i['instance_id'])))


def main():
    m = AzureModule(dict(
        resource_group=dict(type='str'),
        name=dict(type='str'),
        tags=dict(type='dict'),
        include_instances=dict(type='bool', default=False),
    ), required_by=dict(name='resource_group'))
    p = m.params
    compute = m.client('compute')
    if p['name']:
        rest = m.get('reading scale set %s in resource group %s' % (p['name'], p['resource_group']),
                     compute.virtual_machine_scale_sets.get, p['resource_group'], p['name'])
        rests = [to_dict(rest)] if rest is not None else []
    elif p['resource_group']:
        rests = m.call('listing scale sets in resource group %s' % p['resource_group'],
                       lambda: [to_dict(s) for s in compute.virtual_machine_scale_sets.list(p['resource_group'])])
    else:
        rests = m.call('listing scale sets in the subscription', lambda: [to_dict(s) for s in compute.virtual_machine_scale_sets.list_all()])
    models = []
    for rest in rests:
        model = model_from_rest(rest)
        raw_tags = rest.get('tags') or {}
        if p['tags'] and not all(str(raw_tags.get(k)) == str(v) for k, v in p['tags'].items()):
            continue
        model['resource_group'] = parse_resource_id(model['id']).get('resource_group')
        models.append(model)
    models.sort(key=lambda x: ((x['resource_group'] or '').lower(), x['name']))
    if p['include_instances']:
        network = m.client('network')
        for model in models:
            model['instances'] = list_instances(m, compute, network, model['resource_group'], model)
    m.exit(changed=False, scale_sets=models)


if __name__ == '__main__':
    main()

#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) hashistack.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: vmss
short_description: Create, update, scale and delete an Azure virtual machine scale set
version_added: 0.1.0
description:
  - Manages one Linux virtual machine scale set - image, size, capacity, zones, subnet, network security group,
    SSH keys, custom data, tags, system-assigned identity and upgrade policy.
  - Compares the desired model with the current one and sends no write request when nothing differs;
    the diff and RV(changes) say exactly what changes. Only changed parts are sent (merge patch).
  - Refuses changes to fields Azure cannot change on an existing scale set (location, orchestration mode,
    zones, platform fault domain count, admin user name, computer name prefix, SSH keys, OS disk type).
  - Azure never returns custom data, so its SHA-256 is kept in the tag C(hashistack_custom_data_sha256) to
    detect changes.
  - With O(upgrade_policy=Manual), model changes apply to new instances; use M(hashistack.azure.vmss_instance)
    with O(hashistack.azure.vmss_instance#module:action=upgrade) to roll them to existing ones.
options:
  resource_group:
    description: Resource group of the scale set.
    type: str
    required: true
  name:
    description: Name of the scale set.
    type: str
    required: true
  location:
    description: Location. Defaults to the resource group's location when creating. Immutable.
    type: str
  vm_size:
    description: VM size, for example V(Standard_D2s_v3). Required to create.
    type: str
  capacity:
    description: Number of instances. Required to create. Changing it scales out or in.
    type: int
  image:
    description:
      - Marketplace image as C(publisher:offer:sku[:version]) or as a dict with C(publisher), C(offer), C(sku),
        C(version) (default C(latest)); or a custom image / gallery image version id (a string starting with C(/)
        or a dict with C(id)). Required to create.
    type: raw
  zones:
    description: Availability zones (V(1), V(2), V(3)). Immutable.
    type: list
    elements: str
  subnet_id:
    description: Id of the subnet for the instances' primary NIC. Required to create; the subnet must exist.
    type: str
  network_security_group:
    description: Id of a network security group for the instances' NIC.
    type: str
  admin_username:
    description: Administrator user name. Defaults to V(azureuser) when creating. Immutable.
    type: str
  computer_name_prefix:
    description: Prefix of the instances' host names. Defaults to O(name). Immutable.
    type: str
  ssh_public_keys:
    description: OpenSSH public keys for the admin user; password login is disabled. Required to create. Immutable.
    type: list
    elements: str
  custom_data:
    description:
      - Custom data (for example a cloud-init document) as plain text; the module base64-encodes it.
      - Changing it updates the model; existing instances get it when reimaged or upgraded.
    type: str
  identity:
    description: Managed identity of the instances.
    type: str
    choices: [SystemAssigned, None]
  upgrade_policy:
    description: How model changes reach existing instances. Defaults to V(Manual) when creating.
    type: str
    choices: [Manual, Rolling, Automatic]
  overprovision:
    description: Let Azure create extra instances and delete them after provisioning. Off by default.
    type: bool
  orchestration_mode:
    description: Orchestration mode. Defaults to V(Uniform) when creating. Immutable.
    type: str
    choices: [Uniform, Flexible]
  platform_fault_domain_count:
    description: Fault domain count (V(1) for Flexible when not set). Immutable.
    type: int
  os_disk_type:
    description: Storage account type of the OS disk. Immutable.
    type: str
    choices: [Standard_LRS, StandardSSD_LRS, Premium_LRS, StandardSSD_ZRS, Premium_ZRS]
  os_disk_size_gb:
    description: OS disk size in GB (only grows).
    type: int
  terminate_notification_minutes:
    description:
      - Minutes Azure waits, after posting a C(Terminate) scheduled event to an instance it is about to delete,
        before deleting it (V(5) to V(15)); the instance can approve the event to proceed sooner. V(0) turns the
        notification off. Leave unchanged when not set.
      - The cluster roles install a handler that drains the Nomad node and makes the Consul agent leave, then approves.
    type: int
  scale_in_policy:
    description: Which instances Azure removes first when the capacity is lowered outside Ansible. Leave unchanged when not set.
    type: str
    choices: [Default, NewestVM, OldestVM]
  check_size:
    description:
      - Before creating or resizing, verify with the resource SKU list that O(vm_size) exists in the location
        and is not restricted for the subscription.
    type: bool
    default: true
  timeout:
    default: 1800
extends_documentation_fragment:
  - hashistack.azure.azure
  - hashistack.azure.azure.state
  - hashistack.azure.azure.wait
  - hashistack.azure.azure.tags
  - hashistack.azure.azure.attributes
  - hashistack.azure.azure.full_support
author:
  - hashistack.azure maintainers (@hashistack)
'''

EXAMPLES = r'''
- name: Consul/Nomad servers
  hashistack.azure.vmss:
    resource_group: hashistack-prod
    name: servers
    vm_size: Standard_D2s_v3
    capacity: 3
    zones: ['1', '2', '3']
    image: Canonical:0001-com-ubuntu-server-jammy:22_04-lts-gen2:latest
    subnet_id: "{{ vnet.virtual_network.subnets[0].id }}"
    network_security_group: "{{ nsg.network_security_group.id }}"
    ssh_public_keys:
      - "{{ lookup('file', '~/.ssh/id_ed25519.pub') }}"
    custom_data: "{{ lookup('template', 'cloud-init.yml.j2') }}"
    identity: SystemAssigned
    terminate_notification_minutes: 10
    scale_in_policy: NewestVM
    tags:
      cluster: prod
      role: server
  register: servers

- name: Scale the client pool to 10
  hashistack.azure.vmss:
    resource_group: hashistack-prod
    name: clients-a
    capacity: 10

- name: Delete it
  hashistack.azure.vmss:
    resource_group: hashistack-prod
    name: clients-a
    state: absent
'''

RETURN = r'''
vmss:
  description: The scale set after the task (in check mode, what it would be); empty when absent.
  returned: always
  type: dict
  contains:
    id:
      description: ARM id.
      type: str
      sample: /subscriptions/0000/resourceGroups/rg/providers/Microsoft.Compute/virtualMachineScaleSets/servers
    name:
      description: Name.
      type: str
      sample: servers
    location:
      description: Location.
      type: str
      sample: westeurope
    vm_size:
      description: VM size.
      type: str
      sample: Standard_D2s_v3
    capacity:
      description: Instance count.
      type: int
      sample: 3
    zones:
      description: Zones.
      type: list
      elements: str
      sample: ['1', '2', '3']
    image:
      description: Image reference.
      type: dict
      sample: {publisher: Canonical, offer: 0001-com-ubuntu-server-jammy, sku: 22_04-lts-gen2, version: latest}
    subnet_id:
      description: Subnet id.
      type: str
      sample: /subscriptions/0000/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v/subnets/servers
    identity:
      description: Identity type.
      type: str
      sample: SystemAssigned
    principal_id:
      description: Object id of the system-assigned identity (for M(hashistack.azure.role_assignment)).
      type: str
      sample: 5b1f5a2c-0000-0000-0000-000000000000
    custom_data_sha256:
      description: SHA-256 of the custom data in the model.
      type: str
      sample: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    tags:
      description: Tags (without the custom data hash tag).
      type: dict
      sample: {role: server}
    upgrade_policy:
      description: Upgrade policy mode.
      type: str
      sample: Manual
    orchestration_mode:
      description: Orchestration mode.
      type: str
      sample: Uniform
    terminate_notification_minutes:
      description: Minutes of the terminate notification; 0 when it is off.
      type: int
      sample: 10
    scale_in_policy:
      description: Scale-in policy rule.
      type: str
      sample: NewestVM
    provisioning_state:
      description: Provisioning state.
      type: str
      sample: Succeeded
changes:
  description: Human readable list of the changes made (or that would be made in check mode).
  returned: always
  type: list
  elements: str
  sample: ["capacity: 3 -> 5"]
'''

from ansible_collections.hashistack.azure.plugins.module_utils._ids import parse_resource_id
from ansible_collections.hashistack.azure.plugins.module_utils._lifecycle import AzureResource
from ansible_collections.hashistack.azure.plugins.module_utils._network import nsg_id
from ansible_collections.hashistack.azure.plugins.module_utils._sdk import to_dict
from ansible_collections.hashistack.azure.plugins.module_utils._vmss import (
    compare, create_body, desired_from_params, model_from_rest, patch_body, validate_params)


DEFAULTS = dict(orchestration_mode='Uniform', upgrade_policy='Manual', overprovision=False, identity='None',
                os_disk_type='Standard_LRS', admin_username='azureuser')


def check_size(m, client, size, location):
    """Fail when the size does not exist or is restricted in the location (skipped when SKUs cannot be listed)."""
    what = 'listing VM sizes in %s' % location
    try:
        skus = [to_dict(s) for s in m.retry.call(lambda: list(client.resource_skus.list(filter="location eq '%s'" % location)))]
    except Exception as exc:  # pylint: disable=broad-except
        m.warn('Could not verify vm_size %s in %s (%s while %s); continuing.' % (size, location, exc, what))
        return None
    vms = [s for s in skus if (s.get('resourceType') or '').lower() == 'virtualmachines']
    if not vms:
        return None
    match = [s for s in vms if (s.get('name') or '').lower() == size.lower()]
    if not match:
        similar = sorted(set(s['name'] for s in vms if s.get('name', '').lower().split('_')[1:2] == size.lower().split('_')[1:2]))[:8]
        m.fail('VM size %s is not offered in %s.%s Pick a size from the resource SKU list (az vm list-sizes -l %s).'
               % (size, location, (' Similar sizes there: %s.' % ', '.join(similar)) if similar else '', location))
    for restriction in match[0].get('restrictions') or []:
        if (restriction.get('type') or '').lower() == 'location' or not (restriction.get('restrictionInfo') or {}).get('zones'):
            m.fail('VM size %s is restricted in %s for this subscription (%s). Choose another size or location.'
                   % (size, location, restriction.get('reasonCode')))
    return match[0]


class ScaleSet(AzureResource):
    noun = 'scale set'
    client_name = 'compute'
    result_key = 'vmss'
    argument_spec = dict(
        resource_group=dict(type='str', required=True),
        name=dict(type='str', required=True),
        location=dict(type='str'),
        vm_size=dict(type='str'),
        capacity=dict(type='int'),
        image=dict(type='raw'),
        zones=dict(type='list', elements='str'),
        subnet_id=dict(type='str'),
        network_security_group=dict(type='str'),
        admin_username=dict(type='str'),
        computer_name_prefix=dict(type='str'),
        ssh_public_keys=dict(type='list', elements='str', no_log=False),
        custom_data=dict(type='str'),
        identity=dict(type='str', choices=['SystemAssigned', 'None']),
        upgrade_policy=dict(type='str', choices=['Manual', 'Rolling', 'Automatic']),
        overprovision=dict(type='bool'),
        orchestration_mode=dict(type='str', choices=['Uniform', 'Flexible']),
        platform_fault_domain_count=dict(type='int'),
        os_disk_type=dict(type='str', choices=['Standard_LRS', 'StandardSSD_LRS', 'Premium_LRS', 'StandardSSD_ZRS', 'Premium_ZRS']),
        os_disk_size_gb=dict(type='int'),
        terminate_notification_minutes=dict(type='int'),
        scale_in_policy=dict(type='str', choices=['Default', 'NewestVM', 'OldestVM']),
        check_size=dict(type='bool', default=True),
    )
    default_timeout = 1800
    manages_tags = True
    location_from_resource_group = True
    required_to_create = ('vm_size', 'capacity', 'image', 'subnet_id', 'ssh_public_keys')

    def validate(self):
        return validate_params(self.params)

    def read(self):
        return self.get(self.client.virtual_machine_scale_sets.get, self.resource_group, self.name)

    def to_model(self, rest):
        return model_from_rest(rest)

    def desired(self):
        desired = desired_from_params(self.params)
        if desired['network_security_group']:
            desired['network_security_group'] = nsg_id(desired['network_security_group'], self.m.subscription_id, self.resource_group)
        return desired

    def prepare_create(self, model):
        for key, value in DEFAULTS.items():
            if model.get(key) is None:
                model[key] = value
        model['computer_name_prefix'] = model['computer_name_prefix'] or self.name
        if model['orchestration_mode'] == 'Flexible':
            model['overprovision'] = False
            if model['platform_fault_domain_count'] is None:
                model['platform_fault_domain_count'] = 1
        # The subnet must exist: fail clearly before creating anything.
        sub = parse_resource_id(model['subnet_id'])
        net = self.m.client('network', subscription_id=sub.get('subscription'))
        if self.m.get('reading subnet %s' % model['subnet_id'], net.subnets.get, sub['resource_group'], sub['names'][0], sub['names'][1]) is None:
            self.m.fail('Subnet %s does not exist: create it with hashistack.azure.virtual_network before %s.' % (model['subnet_id'], self.what))
        if self.params['check_size']:
            check_size(self.m, self.client, model['vm_size'], model['location'])
        return model

    def create(self, model):
        body = create_body(model, self.params['custom_data'])
        rest = self.lro('creating', lambda: self.client.virtual_machine_scale_sets.begin_create_or_update(self.resource_group, self.name, body))
        created = model_from_rest(rest)
        if created is not None and created['identity'] != 'None' and not created['principal_id']:
            rest = self.read() or rest   # the identity's principal id appears once Azure has made it
        return rest

    def difference(self, current, desired):
        d, errors = compare(current, desired, self.params['purge_tags'])
        if errors or not d.changed:
            return d, errors
        if 'vm_size' in d.changed_keys and self.params['check_size']:
            check_size(self.m, self.client, d.after['vm_size'], current['location'])
        for i, change in enumerate(d.changes):
            if change.startswith('custom_data_sha256:'):
                d.changes[i] = 'custom_data: changed (sha256 %s -> %s)' % (current['custom_data_sha256'], d.after['custom_data_sha256'])
        return d, errors

    def update(self, d, current):
        body = patch_body(d.after, d.changed_keys, self.params['custom_data'], before=current)
        return self.lro('updating', lambda: self.client.virtual_machine_scale_sets.begin_update(self.resource_group, self.name, body))

    def delete(self, current):
        self.lro('deleting', lambda: self.client.virtual_machine_scale_sets.begin_delete(self.resource_group, self.name))


def main():
    ScaleSet.main()


if __name__ == '__main__':
    main()

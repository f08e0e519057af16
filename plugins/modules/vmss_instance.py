#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) hashistack.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: vmss_instance
short_description: Act on instances of an Azure virtual machine scale set
version_added: 0.1.0
description:
  - Restart, reimage, delete, or apply the latest scale set model to instances of a Uniform scale set,
    and set their scale-in protection. Each operation is sent once for all given instances and the
    module waits for it to finish.
  - O(action=delete) and O(action=upgrade) are idempotent (gone instances and instances already on the latest
    model are skipped); O(action=restart) and O(action=reimage) always act.
options:
  resource_group:
    description: Resource group of the scale set.
    type: str
    required: true
  vmss_name:
    description: Name of the scale set.
    type: str
    required: true
  instance_ids:
    description: Instance ids (as returned in C(instances[].instance_id)). V(*) means every instance.
    type: list
    elements: str
    required: true
  action:
    description:
      - V(restart) restarts, V(reimage) reinstalls the OS disk from the image (custom data runs again),
        V(delete) deletes the instances (capacity goes down), V(upgrade) applies the latest scale set model
        (manual upgrade), V(none) only applies the protection options.
    type: str
    choices: [none, restart, reimage, delete, upgrade]
    default: none
  protect_from_scale_in:
    description: Protect the instances from scale-in (leave unchanged when not set).
    type: bool
  protect_from_scale_set_actions:
    description: Protect the instances from scale set actions (leave unchanged when not set).
    type: bool
  timeout:
    default: 1800
extends_documentation_fragment:
  - hashistack.azure.azure
  - hashistack.azure.azure.wait
  - hashistack.azure.azure.attributes
  - hashistack.azure.azure.full_support
author:
  - hashistack.azure maintainers (@hashistack)
'''

EXAMPLES = r'''
- name: Roll the new model to instance 2
  hashistack.azure.vmss_instance:
    resource_group: hashistack-prod
    vmss_name: servers
    instance_ids: ['2']
    action: upgrade

- name: Protect the servers from scale-in
  hashistack.azure.vmss_instance:
    resource_group: hashistack-prod
    vmss_name: servers
    instance_ids: ['*']
    protect_from_scale_in: true
'''

RETURN = r'''
instances:
  description: The targeted instances after the task (deleted ones left out).
  returned: always
  type: list
  elements: dict
  sample: [{instance_id: '2', computer_name: servers000002, latest_model_applied: true, protect_from_scale_in: false}]
changes:
  description: Human readable list of the actions taken (or that would be taken in check mode).
  returned: always
  type: list
  elements: str
  sample: ["upgrade: 2"]
'''

from ansible_collections.hashistack.azure.plugins.module_utils._module import AzureModule, wait_argspec
from ansible_collections.hashistack.azure.plugins.module_utils._sdk import to_dict
from ansible_collections.hashistack.azure.plugins.module_utils._vmss import model_from_rest
from ansible_collections.hashistack.azure.plugins.module_utils._vmss_readers import instance_from_rest


READ_ONLY_VM_KEYS = ('instanceView', 'provisioningState', 'latestModelApplied', 'vmId', 'resources', 'timeCreated')


def vm_put_body(vm, protection):
    body = dict((k, v) for k, v in vm.items() if k in ('location', 'tags', 'zones', 'plan', 'identity'))
    props = dict((k, v) for k, v in (vm.get('properties') or {}).items() if k not in READ_ONLY_VM_KEYS)
    props['protectionPolicy'] = protection
    body['properties'] = props
    return body


def main():
    m = AzureModule(dict(
        resource_group=dict(type='str', required=True),
        vmss_name=dict(type='str', required=True),
        instance_ids=dict(type='list', elements='str', required=True),
        action=dict(type='str', choices=['none', 'restart', 'reimage', 'delete', 'upgrade'], default='none'),
        protect_from_scale_in=dict(type='bool'),
        protect_from_scale_set_actions=dict(type='bool'),
        **wait_argspec(1800)
    ))
    p = m.params
    rg, name = p['resource_group'], p['vmss_name']
    what = 'scale set %s in resource group %s' % (name, rg)
    compute = m.client('compute')
    scale_set = to_dict(m.get('reading ' + what, compute.virtual_machine_scale_sets.get, rg, name))
    vmss = model_from_rest(scale_set)
    if vmss is None:
        m.fail('Scale set %s does not exist in resource group %s.' % (name, rg))
    if vmss['orchestration_mode'] != 'Uniform':
        m.fail('vmss_instance supports Uniform scale sets; %s uses %s orchestration (act on its virtual machines instead).'
               % (name, vmss['orchestration_mode']))

    def list_vms():
        return dict((str(v.get('instanceId')), v) for v in m.call('listing instances of ' + what, lambda: [
            to_dict(v) for v in compute.virtual_machine_scale_set_vms.list(rg, name)]))

    vms = list_vms()
    wanted = sorted(vms) if '*' in p['instance_ids'] else [str(i) for i in p['instance_ids']]
    unknown = [i for i in wanted if i not in vms]
    if unknown and p['action'] != 'delete':
        m.fail('Instance(s) %s are not in %s (it has %s).' % (', '.join(unknown), what, ', '.join(sorted(vms, key=lambda x: (len(x), x))) or 'none'))
    present = [i for i in wanted if i in vms]
    changes = []
    before = dict((i, instance_from_rest(vms[i], {}, scale_set)) for i in present)
    after = dict((i, dict(before[i])) for i in present)

    def lro(desc, starter):
        if not m.check_mode:
            m.lro(desc, starter, p['timeout'], wait=p['wait'])

    # Protection first, so a following action already runs on protected instances.
    prot_keys = [(k, rk) for k, rk in (('protect_from_scale_in', 'protectFromScaleIn'), ('protect_from_scale_set_actions', 'protectFromScaleSetActions'))
                 if p[k] is not None]
    if prot_keys and p['action'] != 'delete':
        for i in present:
            inst = before[i]
            diffs = [(k, rk) for k, rk in prot_keys if inst[k] != p[k]]
            if not diffs:
                continue
            protection = dict(protectFromScaleIn=inst['protect_from_scale_in'], protectFromScaleSetActions=inst['protect_from_scale_set_actions'])
            for k, rk in diffs:
                protection[rk] = p[k]
                after[i][k] = p[k]
                changes.append('%s: %s %s -> %s' % (i, k, inst[k], p[k]))
            lro('setting protection on instance %s of %s' % (i, what),
                lambda i=i, protection=protection: compute.virtual_machine_scale_set_vms.begin_update(rg, name, i, vm_put_body(vms[i], protection)))

    ids = dict(instanceIds=present)
    action = p['action']
    if action == 'restart' and present:
        changes.append('restart: %s' % ', '.join(present))
        lro('restarting instances %s of %s' % (', '.join(present), what), lambda: compute.virtual_machine_scale_sets.begin_restart(rg, name, ids))
    elif action == 'reimage' and present:
        changes.append('reimage: %s' % ', '.join(present))
        lro('reimaging instances %s of %s' % (', '.join(present), what), lambda: compute.virtual_machine_scale_sets.begin_reimage(rg, name, ids))
    elif action == 'delete' and present:
        changes.append('delete: %s' % ', '.join(present))
        for i in present:
            after.pop(i)
        lro('deleting instances %s of %s' % (', '.join(present), what), lambda: compute.virtual_machine_scale_sets.begin_delete_instances(rg, name, ids))
    elif action == 'upgrade':
        stale = [i for i in present if before[i]['latest_model_applied'] is False]
        if stale:
            changes.append('upgrade: %s' % ', '.join(stale))
            for i in stale:
                after[i]['latest_model_applied'] = True
            lro('applying the latest model to instances %s of %s' % (', '.join(stale), what),
                lambda: compute.virtual_machine_scale_sets.begin_update_instances(rg, name, dict(instanceIds=stale)))
    changed = bool(changes)
    instances = [after[i] for i in present if i in after]
    if changed and not m.check_mode and p['wait']:
        fresh = list_vms()
        instances = [instance_from_rest(fresh[i], {}, scale_set) for i in present if i in fresh]
    m.exit(changed=changed, instances=instances, changes=changes,
           diff=dict(before=dict(instances=[before[i] for i in present]), after=dict(instances=[after[i] for i in present if i in after])))


if __name__ == '__main__':
    main()

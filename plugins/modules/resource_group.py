#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) hashistack.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: resource_group
short_description: Create, update and delete Azure resource groups
version_added: 0.1.0
description:
  - Manage one Azure resource group.
  - Sends no write request when the resource group already matches.
options:
  name:
    description: Name of the resource group.
    type: str
    required: true
  location:
    description:
      - Azure location, for example V(westeurope). Required to create the resource group.
      - The location of an existing resource group cannot change; a different value is an error.
    type: str
  state:
    description: Whether the resource group should exist.
    type: str
    choices: [present, absent]
    default: present
  force_delete_nonempty:
    description:
      - With O(state=absent), delete the resource group even if it still contains resources
        (they are deleted with it). Without it a non-empty resource group is not deleted.
    type: bool
    default: false
  wait:
    description: Wait for the deletion to finish.
    type: bool
    default: true
  timeout:
    description: Seconds to wait for the deletion.
    type: int
    default: 1800
extends_documentation_fragment:
  - hashistack.azure.azure
  - hashistack.azure.azure.tags
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
- name: Resource group for the cluster
  hashistack.azure.resource_group:
    name: hashistack-prod
    location: westeurope
    tags:
      cluster: prod

- name: Delete it with everything inside
  hashistack.azure.resource_group:
    name: hashistack-prod
    state: absent
    force_delete_nonempty: true
'''

RETURN = r'''
resource_group:
  description: The resource group after the task (empty when absent).
  returned: always
  type: dict
  contains:
    id:
      description: ARM id.
      type: str
      sample: /subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/hashistack-prod
    name:
      description: Name.
      type: str
      sample: hashistack-prod
    location:
      description: Location.
      type: str
      sample: westeurope
    tags:
      description: Tags.
      type: dict
      sample: {cluster: prod}
    provisioning_state:
      description: Provisioning state.
      type: str
      sample: Succeeded
changes:
  description: Human readable list of the changes made (or that would be made in check mode).
  returned: always
  type: list
  elements: str
  sample: ["tags: {} -> {\"cluster\": \"prod\"}"]
'''

from ansible_collections.hashistack.azure.plugins.module_utils._azure import AzureModule, to_dict
from ansible_collections.hashistack.azure.plugins.module_utils._diff import ModelDiff, merge_tags


def model_from_rest(rest):
    if rest is None:
        return None
    return dict(
        id=rest.get('id'),
        name=rest.get('name'),
        location=rest.get('location'),
        tags=rest.get('tags') or {},
        provisioning_state=(rest.get('properties') or {}).get('provisioningState'),
    )


def main():
    m = AzureModule(dict(
        name=dict(type='str', required=True),
        location=dict(type='str'),
        state=dict(type='str', choices=['present', 'absent'], default='present'),
        tags=dict(type='dict'),
        purge_tags=dict(type='bool', default=False),
        force_delete_nonempty=dict(type='bool', default=False),
        wait=dict(type='bool', default=True),
        timeout=dict(type='int', default=1800),
    ))
    p = m.params
    name = p['name']
    client = m.client('resource')
    what = 'resource group %s' % name
    current = model_from_rest(to_dict(m.get('reading ' + what, client.resource_groups.get, name)))
    d = ModelDiff(current)

    if p['state'] == 'absent':
        if current is None:
            m.exit(changed=False, resource_group={}, changes=[], diff=d.diff)
        if not p['force_delete_nonempty']:
            resources = m.call('listing resources in ' + what, lambda: [to_dict(r) for r in client.resources.list_by_resource_group(name)])
            if resources:
                names = ', '.join(sorted('%s (%s)' % (r.get('name'), r.get('type')) for r in resources)[:10])
                m.fail('Not deleting %s: it still contains %d resource(s): %s. Delete them first or set force_delete_nonempty=true.'
                       % (what, len(resources), names))
        d.mark_absent()
        if not m.check_mode:
            m.lro('deleting ' + what, lambda: client.resource_groups.begin_delete(name), p['timeout'], wait=p['wait'])
        m.exit(changed=True, resource_group={}, changes=d.changes, diff=d.diff)

    if current is None:
        if not p['location']:
            m.fail('location is required to create %s' % what)
        desired = dict(name=name, location=p['location'], tags=p['tags'] or {})
        d.set_all(desired)
        result = d.after
        if not m.check_mode:
            body = dict(location=p['location'], tags=p['tags'] or {})
            result = model_from_rest(to_dict(m.call('creating ' + what, client.resource_groups.create_or_update, name, body)))
        m.exit(changed=True, resource_group=result, changes=d.changes, diff=d.diff)

    if p['location'] and p['location'].replace(' ', '').lower() != (current['location'] or '').lower():
        m.fail('Cannot move %s from %s to %s: the location of a resource group is immutable. Use another name or delete it first.'
               % (what, current['location'], p['location']))
    d.compare('tags', p['tags'], kind='dict' if p['purge_tags'] else 'subset',
              merge=lambda want, have: merge_tags(want, have, p['purge_tags']))
    result = d.after
    if d.changed and not m.check_mode:
        body = dict(location=current['location'], tags=d.after['tags'])
        result = model_from_rest(to_dict(m.call('updating ' + what, client.resource_groups.create_or_update, name, body)))
    m.exit(changed=d.changed, resource_group=result, changes=d.changes, diff=d.diff)


if __name__ == '__main__':
    main()

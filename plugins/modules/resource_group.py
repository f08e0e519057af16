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
  force_delete_nonempty:
    description:
      - With O(state=absent), delete the resource group even if it still contains resources
        (they are deleted with it). Without it a non-empty resource group is not deleted.
    type: bool
    default: false
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

from ansible_collections.hashistack.azure.plugins.module_utils._lifecycle import AzureResource
from ansible_collections.hashistack.azure.plugins.module_utils._sdk import to_dict


class ResourceGroup(AzureResource):
    noun = 'resource group'
    client_name = 'resource'
    result_key = 'resource_group'
    argument_spec = dict(
        name=dict(type='str', required=True),
        location=dict(type='str'),
        force_delete_nonempty=dict(type='bool', default=False),
    )
    default_timeout = 1800
    manages_tags = True
    required_to_create = ('location',)
    immutable = (('location', 'location'),)
    immutable_hints = dict(location='use another name, or delete the resource group first')

    def describe(self):
        return 'resource group %s' % self.name

    def read(self):
        return self.get(self.client.resource_groups.get, self.name)

    def to_model(self, rest):
        if rest is None:
            return None
        return dict(
            id=rest.get('id'),
            name=rest.get('name'),
            location=rest.get('location'),
            tags=rest.get('tags') or {},
            provisioning_state=(rest.get('properties') or {}).get('provisioningState'),
        )

    def desired(self):
        return dict(name=self.name, location=self.params['location'], tags=self.params['tags'])

    def compare(self, d, current, desired):
        self.compare_tags(d, desired)

    def put(self, verb, model):
        return self.call(verb, self.client.resource_groups.create_or_update, self.name,
                         dict(location=model['location'], tags=model['tags']))

    def before_delete(self, current):
        if self.params['force_delete_nonempty']:
            return
        resources = self.m.call('listing resources in ' + self.what,
                                lambda: [to_dict(r) for r in self.client.resources.list_by_resource_group(self.name)])
        if resources:
            names = ', '.join(sorted('%s (%s)' % (r.get('name'), r.get('type')) for r in resources)[:10])
            self.m.fail('Not deleting %s: it still contains %d resource(s): %s. Delete them first or set force_delete_nonempty=true.'
                        % (self.what, len(resources), names))

    def delete(self, current):
        self.lro('deleting', lambda: self.client.resource_groups.begin_delete(self.name))


def main():
    ResourceGroup.main()


if __name__ == '__main__':
    main()

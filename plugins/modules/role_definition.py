#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) hashistack.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: role_definition
short_description: Create, update and delete an Azure custom role definition
version_added: 0.2.0
description:
  - Ensures one Azure RBAC custom role (a role definition of type C(CustomRole)) exists with exactly the given
    permissions, or does not exist. Use it for least privilege, for example a role that only lets a scale set's
    managed identity read what Consul and Nomad cloud auto-join reads, assigned with M(hashistack.azure.role_assignment).
  - The role definition id is a deterministic UUID (version 5) of O(scope) and O(name), so re-runs find the role; a
    custom role of the same name created elsewhere under another id is found by name and managed instead.
  - Role names are unique in the Microsoft Entra tenant, and a role can be seen and assigned only at or below its
    O(assignable_scopes).
  - Permission lists are compared as sets, case-insensitively (Azure treats permission strings so); a re-run that
    matches sends no write.
options:
  name:
    description: Display name of the role (its C(roleName)), unique in the tenant. At most 512 characters.
    type: str
    required: true
  scope:
    description:
      - Where the role definition is created, a subscription C(/subscriptions/<id>) or resource group
        C(/subscriptions/<id>/resourceGroups/<name>) id. It must be one of O(assignable_scopes).
    type: str
    required: true
  description:
    description:
      - Description of the role, at most 2048 characters. When omitted an existing description is kept (empty on creation).
    type: str
  actions:
    description:
      - Control plane actions the role allows, for example V(Microsoft.Compute/virtualMachineScaleSets/read).
        Wildcards are allowed (one C(*) per string), but explicit actions are least privilege.
      - The role has exactly these actions after the task.
    type: list
    elements: str
    default: []
  not_actions:
    description: Control plane actions taken out of O(actions) (typically of a wildcard). Exactly these after the task.
    type: list
    elements: str
    default: []
  data_actions:
    description: Data plane actions the role allows. Exactly these after the task.
    type: list
    elements: str
    default: []
  not_data_actions:
    description: Data plane actions taken out of O(data_actions). Exactly these after the task.
    type: list
    elements: str
    default: []
  assignable_scopes:
    description:
      - Scopes at and below which the role can be assigned (subscription, resource group or resource ids; not C(/)).
      - Defaults to O(scope) alone.
    type: list
    elements: str
  id:
    description:
      - Role definition GUID to use instead of the deterministic UUID described above, for a role created elsewhere.
    type: str
extends_documentation_fragment:
  - hashistack.azure.azure
  - hashistack.azure.azure.state
  - hashistack.azure.azure.attributes
  - hashistack.azure.azure.full_support
notes:
  - A role that is still assigned cannot be deleted; delete its assignments first (M(hashistack.azure.role_assignment)
    with O(state=absent)).
  - Creating, changing or deleting a custom role needs C(Microsoft.Authorization/roleDefinitions/write) or C(/delete)
    on every assignable scope, for example Owner or User Access Administrator.
seealso:
  - module: hashistack.azure.role_assignment
author:
  - hashistack.azure maintainers (@hashistack)
'''

EXAMPLES = r'''
- name: A role with only what Consul/Nomad cloud auto-join reads, on the cluster's resource group
  hashistack.azure.role_definition:
    name: hashistack-prod-auto-join
    scope: /subscriptions/{{ subscription_id }}/resourceGroups/hashistack-prod
    description: Read the scale sets, their instances and network interfaces (go-discover provider=azure).
    actions:
      - Microsoft.Compute/virtualMachineScaleSets/read
      - Microsoft.Compute/virtualMachineScaleSets/virtualMachines/read
      - Microsoft.Compute/virtualMachineScaleSets/networkInterfaces/read
      - Microsoft.Compute/virtualMachineScaleSets/virtualMachines/networkInterfaces/read
      - Microsoft.Network/networkInterfaces/read
  register: auto_join_role

- name: Give it to the servers' managed identity
  hashistack.azure.role_assignment:
    scope: /subscriptions/{{ subscription_id }}/resourceGroups/hashistack-prod
    role: "{{ auto_join_role.role_definition.id }}"
    principal_id: "{{ servers.vmss.principal_id }}"
    principal_type: ServicePrincipal

- name: Remove the role (after its assignments)
  hashistack.azure.role_definition:
    name: hashistack-prod-auto-join
    scope: /subscriptions/{{ subscription_id }}/resourceGroups/hashistack-prod
    state: absent
'''

RETURN = r'''
role_definition:
  description: The role definition after the task (empty when absent).
  returned: always
  type: dict
  contains:
    id:
      description: ARM id of the role definition; pass it as O(hashistack.azure.role_assignment#module:role).
      type: str
      sample: /subscriptions/0000/providers/Microsoft.Authorization/roleDefinitions/2b7c1d5e-3f4a-5b6c-8d9e-0f1a2b3c4d5e
    guid:
      description: Role definition GUID (the last segment of RV(role_definition.id)).
      type: str
      sample: 2b7c1d5e-3f4a-5b6c-8d9e-0f1a2b3c4d5e
    name:
      description: Display name (C(roleName)).
      type: str
      sample: hashistack-prod-auto-join
    description:
      description: Description.
      type: str
      sample: Read the scale sets, their instances and network interfaces.
    actions:
      description: Control plane actions allowed.
      type: list
      elements: str
      sample: [Microsoft.Compute/virtualMachineScaleSets/read]
    not_actions:
      description: Control plane actions excluded.
      type: list
      elements: str
      sample: []
    data_actions:
      description: Data plane actions allowed.
      type: list
      elements: str
      sample: []
    not_data_actions:
      description: Data plane actions excluded.
      type: list
      elements: str
      sample: []
    assignable_scopes:
      description: Scopes where the role can be assigned.
      type: list
      elements: str
      sample: [/subscriptions/0000/resourceGroups/hashistack-prod]
changes:
  description: Human readable list of the changes made (or that would be made in check mode).
  returned: always
  type: list
  elements: str
  sample: ["actions: [\"Microsoft.Compute/virtualMachineScaleSets/read\"] -> [\"*/read\"]"]
'''

import re

from ansible_collections.hashistack.azure.plugins.module_utils._ids import is_guid, scoped_guid
from ansible_collections.hashistack.azure.plugins.module_utils._lifecycle import AzureResource
from ansible_collections.hashistack.azure.plugins.module_utils._sdk import to_dict


API_VERSION = '2022-04-01'
NAMESPACE = '7d7f3a56-55a8-4d0b-9d55-2f3b1c6e9a41'
SCOPE_RE = re.compile(r'^/subscriptions/[^/]+(/resourceGroups/[^/]+(/providers/.+)?)?$', re.IGNORECASE)
PERMISSIONS = (('actions', 'actions'), ('not_actions', 'notActions'), ('data_actions', 'dataActions'),
               ('not_data_actions', 'notDataActions'))


def definition_guid(scope, name):
    """Deterministic role definition GUID for (scope, role name)."""
    return scoped_guid(NAMESPACE, scope, name)


def model_from_rest(rest):
    if rest is None:
        return None
    props = rest.get('properties') or {}
    model = dict(id=rest.get('id'), guid=rest.get('name'), name=props.get('roleName'),
                 description=props.get('description') or '', assignable_scopes=list(props.get('assignableScopes') or []))
    blocks = props.get('permissions') or []
    for key, rest_key in PERMISSIONS:
        # Azure allows several permission blocks; the module writes one, and reads their union.
        model[key] = [v for block in blocks for v in (block.get(rest_key) or [])]
    return model


def same_strings(a, b):
    return sorted(x.lower() for x in a or []) == sorted(x.lower() for x in b or [])


class RoleDefinition(AzureResource):
    noun = 'role definition'
    client_name = 'authorization'
    result_key = 'role_definition'
    argument_spec = dict(
        name=dict(type='str', required=True),
        scope=dict(type='str', required=True),
        description=dict(type='str'),
        actions=dict(type='list', elements='str', default=[]),
        not_actions=dict(type='list', elements='str', default=[]),
        data_actions=dict(type='list', elements='str', default=[]),
        not_data_actions=dict(type='list', elements='str', default=[]),
        assignable_scopes=dict(type='list', elements='str'),
        id=dict(type='str'),
    )

    def __init__(self, module):
        p = module.params
        self.scope = '/' + p['scope'].strip('/')
        if not SCOPE_RE.match(self.scope):
            module.fail('scope must be a subscription or resource group id (/subscriptions/<id>[/resourceGroups/<name>]), '
                        'got %r' % p['scope'])
        if p['id'] and not is_guid(p['id']):
            module.fail('id must be a GUID (the last segment of a role definition id), got %r' % p['id'])
        self.guid = (p['id'] or definition_guid(self.scope, p['name'])).lower()
        self.role_name = p['name']
        super().__init__(module, name=self.guid)

    def client_options(self):
        return dict(api_version=API_VERSION)

    def describe(self):
        return 'role definition %s (%s) at %s' % (self.params['name'], self.guid, self.scope)

    def validate(self):
        p = self.params
        errors = []
        if not p['name'].strip() or len(p['name']) > 512:
            errors.append('name must be 1 to 512 characters')
        if p['description'] and len(p['description']) > 2048:
            errors.append('description must be at most 2048 characters')
        if not (p['actions'] or p['data_actions']):
            errors.append('set actions or data_actions: a role without permissions grants nothing')
        for key, _rest in PERMISSIONS:
            bad = [a for a in p[key] if not a.strip() or a.count('*') > 1]
            if bad:
                errors.append('%s: %s (each is Namespace/type/.../verb with at most one *)' % (key, ', '.join(bad)))
        scopes = self.assignable_scopes()
        bad = [s for s in scopes if not SCOPE_RE.match(s)]
        if bad:
            errors.append('assignable_scopes must be subscription, resource group or resource ids (not / or wildcards): %s'
                          % ', '.join(bad))
        if self.scope.lower() not in (s.lower() for s in scopes):
            errors.append('scope %s must be one of assignable_scopes (%s)' % (self.scope, ', '.join(scopes)))
        return errors

    def assignable_scopes(self):
        return ['/' + s.strip('/') for s in self.params['assignable_scopes'] or [self.scope]]

    def read(self):
        rest = self.get(self.client.role_definitions.get, self.scope, self.guid)
        if rest is not None or self.params['id']:
            return rest
        # The same role may exist under another id (portal, CLI, Terraform): names are unique in the tenant.
        found = self.m.call('looking up role %s at %s' % (self.role_name, self.scope), lambda: [
            to_dict(r) for r in self.client.role_definitions.list(self.scope, filter="roleName eq '%s'" % self.role_name.replace("'", "''"))])
        for rest in found:
            props = rest.get('properties') or {}
            if (props.get('roleName') or '').lower() != self.role_name.lower():
                continue
            if (props.get('type') or '').lower() != 'customrole':
                self.m.fail('%s is a built-in role, which cannot be changed. Fix: choose another name for the custom role.'
                            % self.role_name)
            self.guid = self.name = rest['name'].lower()
            return rest
        return None

    def to_model(self, rest):
        return model_from_rest(rest)

    def desired(self):
        p = self.params
        model = dict(id='/subscriptions/%s/providers/Microsoft.Authorization/roleDefinitions/%s' % (self.m.subscription_id, self.guid),
                     guid=self.guid, name=p['name'], description=p['description'], assignable_scopes=self.assignable_scopes())
        for key, _rest in PERMISSIONS:
            model[key] = list(p[key])
        return model

    def prepare_create(self, model):
        model['description'] = model['description'] or ''
        return model

    def compare(self, d, current, desired):
        d.compare('name', desired['name'])
        d.compare('description', desired['description'])
        for key in [k for k, _rest in PERMISSIONS] + ['assignable_scopes']:
            # permission strings and scopes are case-insensitive: only a real difference is a change
            if not same_strings(desired[key], current[key]):
                d.compare(key, desired[key], kind='set')
        return []

    def put(self, verb, model):
        props = dict(roleName=model['name'], description=model['description'] or '', type='CustomRole',
                     assignableScopes=model['assignable_scopes'],
                     permissions=[{rest_key: model[key] for key, rest_key in PERMISSIONS}])
        return self.call(verb, self.client.role_definitions.create_or_update, self.scope, self.guid, dict(properties=props))

    def delete(self, current):
        self.call('deleting', self.client.role_definitions.delete, self.scope, current['guid'])


def main():
    RoleDefinition.main()


if __name__ == '__main__':
    main()

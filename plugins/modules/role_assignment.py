#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) hashistack.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: role_assignment
short_description: Assign an Azure role to a principal on a scope
version_added: 0.1.0
description:
  - Ensures one role assignment identified by (O(scope), O(role), O(principal_id)) exists or not,
    for example read access on a resource group for a scale set's managed identity so Consul and Nomad
    can find their peers (cloud auto-join).
  - The assignment name is a deterministic UUID (version 5) of scope, role and principal, so re-runs never
    create duplicates; an equivalent assignment created elsewhere under another name is recognised too.
options:
  scope:
    description: Scope, for example a resource group id C(/subscriptions/<sub>/resourceGroups/<rg>).
    type: str
    required: true
  role:
    description:
      - Role definition by name (for example V(Reader)), by GUID, or by full role definition id.
    type: str
    required: true
  principal_id:
    description: Object id of the user, group, service principal or managed identity.
    type: str
    required: true
  principal_type:
    description:
      - Type of the principal. Setting it avoids replication delays for new managed identities.
    type: str
    choices: [ServicePrincipal, User, Group, ForeignGroup, Device]
  name:
    description: Assignment name (GUID). Defaults to the deterministic UUID described above.
    type: str
extends_documentation_fragment:
  - hashistack.azure.azure
  - hashistack.azure.azure.state
  - hashistack.azure.azure.attributes
  - hashistack.azure.azure.full_support
author:
  - hashistack.azure maintainers (@hashistack)
'''

EXAMPLES = r'''
- name: Let the servers' identity list the scale sets for cloud auto-join
  hashistack.azure.role_assignment:
    scope: /subscriptions/{{ subscription_id }}/resourceGroups/hashistack-prod
    role: Reader
    principal_id: "{{ servers.vmss.identity.principal_id }}"
    principal_type: ServicePrincipal
'''

RETURN = r'''
role_assignment:
  description: The assignment after the task (empty when absent).
  returned: always
  type: dict
  contains:
    id:
      description: ARM id of the assignment.
      type: str
      sample: /subscriptions/0000/resourceGroups/rg/providers/Microsoft.Authorization/roleAssignments/6f1c...
    name:
      description: Assignment name.
      type: str
      sample: 6f1c5e1a-8d3b-5c55-9a7e-2f7d1c0b9e11
    scope:
      description: Scope.
      type: str
      sample: /subscriptions/0000/resourceGroups/rg
    role_definition_id:
      description: Role definition id.
      type: str
      sample: /subscriptions/0000/providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7
    principal_id:
      description: Principal object id.
      type: str
      sample: 9a1f3c1e-0000-0000-0000-000000000000
changes:
  description: Human readable list of the changes made (or that would be made in check mode).
  returned: always
  type: list
  elements: str
  sample: ["create"]
'''

from ansible_collections.hashistack.azure.plugins.module_utils._ids import is_guid, scoped_guid
from ansible_collections.hashistack.azure.plugins.module_utils._lifecycle import AzureResource
from ansible_collections.hashistack.azure.plugins.module_utils._sdk import to_dict


API_VERSION = '2022-04-01'
NAMESPACE = '0b0e6c8e-6d3f-4c55-8f0e-6a7a68a3c2b1'


def assignment_name(scope, role_guid, principal_id):
    """Deterministic assignment name for (scope, role, principal)."""
    return scoped_guid(NAMESPACE, scope, role_guid, principal_id)


def role_guid(role_definition_id):
    return (role_definition_id or '').rstrip('/').rsplit('/', 1)[-1].lower()


def model_from_rest(rest):
    if rest is None:
        return None
    props = rest.get('properties') or {}
    return dict(id=rest.get('id'), name=rest.get('name'), scope=props.get('scope'),
                role_definition_id=props.get('roleDefinitionId'), principal_id=props.get('principalId'),
                principal_type=props.get('principalType'))


class RoleAssignment(AzureResource):
    noun = 'role assignment'
    client_name = 'authorization'
    result_key = 'role_assignment'
    argument_spec = dict(
        scope=dict(type='str', required=True),
        role=dict(type='str', required=True),
        principal_id=dict(type='str', required=True),
        principal_type=dict(type='str', choices=['ServicePrincipal', 'User', 'Group', 'ForeignGroup', 'Device']),
        name=dict(type='str'),
    )

    def __init__(self, module):
        p = module.params
        self.scope = '/' + p['scope'].strip('/')
        if not self.scope.lower().startswith('/subscriptions/'):
            module.fail('scope must start with /subscriptions/<id>, got %r' % p['scope'])
        self.principal = p['principal_id']
        self.m = module   # the role lookup below names the assignment, before the base is set up
        self.role_id = self._role_definition_id(p['role'])
        super().__init__(module, name=p['name'] or assignment_name(self.scope, role_guid(self.role_id), self.principal))

    def client_options(self):
        return dict(api_version=API_VERSION)

    def _role_definition_id(self, role):
        m = self.m
        if role.startswith('/'):
            return role
        if is_guid(role):
            return '/subscriptions/%s/providers/Microsoft.Authorization/roleDefinitions/%s' % (m.subscription_id, role.lower())
        found = m.call('looking up role %s at %s' % (role, self.scope), lambda: [
            to_dict(r) for r in self.client.role_definitions.list(self.scope, filter="roleName eq '%s'" % role.replace("'", "''"))])
        found = [r for r in found if ((r.get('properties') or {}).get('roleName') or '').lower() == role.lower()] or found
        if not found:
            m.fail('Role %r does not exist at scope %s. Check the name (for example Reader, Contributor) or pass the role definition GUID.'
                   % (role, self.scope))
        return found[0]['id']

    def describe(self):
        return 'role assignment of %s to %s on %s' % (self.params['role'], self.principal, self.scope)

    def read(self):
        rest = self.get(self.client.role_assignments.get, self.scope, self.name)
        if rest is not None:
            return rest
        # An equivalent assignment may exist under another name (portal, CLI, Terraform).
        existing = self.m.call('listing role assignments on %s' % self.scope, lambda: [
            to_dict(r) for r in self.client.role_assignments.list_for_scope(self.scope, filter="principalId eq '%s'" % self.principal)])
        for rest in existing:
            model = model_from_rest(rest)
            if (role_guid(model['role_definition_id']) == role_guid(self.role_id) and (model['principal_id'] or '').lower() == self.principal.lower()
                    and (model['scope'] or '').rstrip('/').lower() == self.scope.lower()):
                return rest
        return None

    def to_model(self, rest):
        return model_from_rest(rest)

    def desired(self):
        return dict(name=self.name, scope=self.scope, role_definition_id=self.role_id, principal_id=self.principal,
                    principal_type=self.params['principal_type'])

    def compare(self, d, current, desired):
        # An assignment never changes (nothing to update); a different role is another assignment.
        if role_guid(current['role_definition_id']) != role_guid(self.role_id):
            return ['%s exists for role %s, not %s, and an assignment cannot change its role. Fix: delete it or pick another name'
                    % (current['name'], current['role_definition_id'], self.role_id)]
        return []

    def create(self, model):
        props = dict(roleDefinitionId=self.role_id, principalId=self.principal)
        if model['principal_type']:
            props['principalType'] = model['principal_type']
        return self.call('creating', self.client.role_assignments.create, self.scope, self.name, dict(properties=props))

    def delete(self, current):
        self.call('deleting', self.client.role_assignments.delete, self.scope, current['name'])


def main():
    RoleAssignment.main()


if __name__ == '__main__':
    main()

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
  state:
    description: Whether the assignment should exist.
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment:
  - hashistack.azure.azure
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

import re
import uuid

from ansible_collections.hashistack.azure.plugins.module_utils._azure import AzureModule, to_dict


API_VERSION = '2022-04-01'
NAMESPACE = uuid.UUID('0b0e6c8e-6d3f-4c55-8f0e-6a7a68a3c2b1')
GUID_RE = re.compile(r'^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$')


def assignment_name(scope, role_guid, principal_id):
    """Deterministic assignment name for (scope, role, principal)."""
    key = '|'.join((scope.rstrip('/').lower(), role_guid.lower(), principal_id.lower()))
    return str(uuid.uuid5(NAMESPACE, key))


def role_guid(role_definition_id):
    return (role_definition_id or '').rstrip('/').rsplit('/', 1)[-1].lower()


def model_from_rest(rest):
    if rest is None:
        return None
    props = rest.get('properties') or {}
    return dict(id=rest.get('id'), name=rest.get('name'), scope=props.get('scope'),
                role_definition_id=props.get('roleDefinitionId'), principal_id=props.get('principalId'),
                principal_type=props.get('principalType'))


def main():
    m = AzureModule(dict(
        scope=dict(type='str', required=True),
        role=dict(type='str', required=True),
        principal_id=dict(type='str', required=True),
        principal_type=dict(type='str', choices=['ServicePrincipal', 'User', 'Group', 'ForeignGroup', 'Device']),
        name=dict(type='str'),
        state=dict(type='str', choices=['present', 'absent'], default='present'),
    ))
    p = m.params
    scope = '/' + p['scope'].strip('/')
    if not scope.lower().startswith('/subscriptions/'):
        m.fail('scope must start with /subscriptions/<id>, got %r' % p['scope'])
    principal = p['principal_id']
    client = m.client('authorization', api_version=API_VERSION)

    role = p['role']
    if role.startswith('/'):
        role_id = role
    elif GUID_RE.match(role):
        role_id = '/subscriptions/%s/providers/Microsoft.Authorization/roleDefinitions/%s' % (m.subscription_id, role.lower())
    else:
        found = m.call('looking up role %s at %s' % (role, scope),
                       lambda: [to_dict(r) for r in client.role_definitions.list(scope, filter="roleName eq '%s'" % role.replace("'", "''"))])
        found = [r for r in found if ((r.get('properties') or {}).get('roleName') or '').lower() == role.lower()] or found
        if not found:
            m.fail('Role %r does not exist at scope %s. Check the name (for example Reader, Contributor) or pass the role definition GUID.'
                   % (role, scope))
        role_id = found[0]['id']
    guid = role_guid(role_id)
    name = p['name'] or assignment_name(scope, guid, principal)
    what = 'role assignment of %s to %s on %s' % (role, principal, scope)

    current = model_from_rest(to_dict(m.get('reading ' + what, client.role_assignments.get, scope, name)))
    if current is None:
        # An equivalent assignment may exist under another name (portal, CLI, Terraform).
        existing = m.call('listing role assignments on %s' % scope,
                          lambda: [to_dict(r) for r in client.role_assignments.list_for_scope(scope, filter="principalId eq '%s'" % principal)])
        for rest in existing:
            model = model_from_rest(rest)
            if (role_guid(model['role_definition_id']) == guid and (model['principal_id'] or '').lower() == principal.lower()
                    and (model['scope'] or '').rstrip('/').lower() == scope.lower()):
                current = model
                break
    if current is not None and role_guid(current['role_definition_id']) != guid:
        m.fail('Role assignment %s on %s already exists for role %s, not %s: assignments cannot change role. Delete it or pick another name.'
               % (name, scope, current['role_definition_id'], role_id))

    if p['state'] == 'absent':
        if current is None:
            m.exit(changed=False, role_assignment={}, changes=[], diff=dict(before={}, after={}))
        if not m.check_mode:
            m.call('deleting ' + what, client.role_assignments.delete, scope, current['name'])
        m.exit(changed=True, role_assignment={}, changes=['delete'], diff=dict(before=current, after={}))

    if current is not None:
        m.exit(changed=False, role_assignment=current, changes=[], diff=dict(before=current, after=current))
    desired = dict(id=None, name=name, scope=scope, role_definition_id=role_id, principal_id=principal, principal_type=p['principal_type'])
    result = desired
    if not m.check_mode:
        props = dict(roleDefinitionId=role_id, principalId=principal)
        if p['principal_type']:
            props['principalType'] = p['principal_type']
        result = model_from_rest(to_dict(m.call('creating ' + what, client.role_assignments.create, scope, name, dict(properties=props))))
    m.exit(changed=True, role_assignment=result, changes=['create'], diff=dict(before={}, after=desired))


if __name__ == '__main__':
    main()

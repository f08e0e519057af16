#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) hashistack.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: signed_in_principal_info
short_description: Object id and type of the principal the collection signs in as
version_added: 0.2.0
description:
  - Gets a Resource Manager token with the task's credential (service principal, Azure CLI login or managed
    identity) and returns the claims that name who it is - the object id (C(oid)), its type (C(idtyp)) and the
    tenant (C(tid)). No other call is made (no Microsoft Graph permission is needed).
  - Use it to grant the operator a role without asking for its object id, for example
    M(hashistack.azure.role_assignment) of V(Key Vault Secrets Officer) on the cluster's vault.
  - The token itself is never returned.
options: {}
extends_documentation_fragment:
  - hashistack.azure.azure
  - hashistack.azure.azure.attributes
  - hashistack.azure.azure.info_module
author:
  - hashistack.azure maintainers (@hashistack)
'''

EXAMPLES = r'''
- name: Who runs this play
  hashistack.azure.signed_in_principal_info:
  register: me

- name: Let it write the vault's secrets
  hashistack.azure.role_assignment:
    scope: "{{ vault.keyvault.id }}"
    role: Key Vault Secrets Officer
    principal_id: "{{ me.principal.object_id }}"
    principal_type: "{{ me.principal.principal_type | default(omit, true) }}"
'''

RETURN = r'''
principal:
  description: The signed-in principal.
  returned: always
  type: dict
  contains:
    object_id:
      description: Object id (the token's C(oid) claim), what role assignments name as C(principalId).
      type: str
      sample: 6f0b4f0e-1c1e-4a9a-9d7e-0c4a3e1b2c3d
    principal_type:
      description:
        - V(ServicePrincipal) for applications and managed identities, V(User) for users (from the C(idtyp) claim);
          empty when the token does not say.
      type: str
      sample: ServicePrincipal
    tenant_id:
      description: Tenant of the token (C(tid) claim).
      type: str
      sample: 72f988bf-86f1-41af-91ab-2d7cd011db47
    app_id:
      description: Application (client) id (C(appid) or C(azp) claim); empty for users.
      type: str
      sample: 04b07795-8ddb-461a-bbee-02f9e1bf7b46
'''

import base64
import json

from ansible_collections.hashistack.azure.plugins.module_utils._module import AzureModule

PRINCIPAL_TYPES = {'app': 'ServicePrincipal', 'user': 'User'}


def claims_of(token):
    """The payload of a JWT (no signature check: the token was just issued to this credential)."""
    parts = token.split('.')
    if len(parts) != 3:
        raise ValueError('the access token is not a JWT (%d parts)' % len(parts))
    payload = parts[1] + '=' * (-len(parts[1]) % 4)
    return json.loads(base64.urlsafe_b64decode(payload.encode('ascii')).decode('utf-8'))


def principal_from_claims(claims):
    return dict(object_id=claims.get('oid') or '',
                principal_type=PRINCIPAL_TYPES.get(str(claims.get('idtyp') or '').lower(), ''),
                tenant_id=claims.get('tid') or '',
                app_id=claims.get('appid') or claims.get('azp') or '')


def main():
    m = AzureModule(argument_spec=dict(), supports_check_mode=True)
    session = m.session
    token = m.call('getting a token for %s' % session.cloud['resource_manager'],
                   session.credential.get_token, session.cloud['credential_scope'])
    try:
        principal = principal_from_claims(claims_of(token.token))
    except (ValueError, UnicodeDecodeError) as exc:
        m.fail('The token of %s cannot be read (%s); pass the principal object id yourself.' % (session.describe_auth(), exc))
    if not principal['object_id']:
        m.fail('The token of %s has no oid claim; pass the principal object id yourself '
               '(az ad signed-in-user show --query id, or az ad sp show --id CLIENT_ID --query id).' % session.describe_auth())
    m.exit(changed=False, principal=principal)


if __name__ == '__main__':
    main()

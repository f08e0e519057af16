#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) hashistack.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: keyvault
short_description: Manage an Azure Key Vault that uses Azure RBAC
version_added: 0.2.0
description:
  - Create, update or delete one Azure Key Vault (C(Microsoft.KeyVault/vaults)).
  - Authorization to the vault's data (secrets) goes through Azure role assignments by default
    (O(enable_rbac_authorization)); grant them with M(hashistack.azure.role_assignment) on the vault's id, for
    example V(Key Vault Secrets User) for a scale set's managed identity and V(Key Vault Secrets Officer) for
    the operator.
  - The vault trusts the Entra ID tenant of its subscription (read from the subscription when creating).
  - Soft delete is always on (Azure no longer lets it be turned off). When a vault of the same name is in the
    soft-deleted state, it is recovered (O(recover)) instead of failing on the taken name.
  - Sends no write request when the vault already matches.
options:
  resource_group:
    description: Resource group of the vault.
    type: str
    required: true
  name:
    description:
      - Vault name, 3-24 letters, digits and hyphens, starting with a letter, not ending with a hyphen, no
        consecutive hyphens. Vault names are global in Azure.
    type: str
    required: true
  location:
    description: Location. Defaults to the location of the resource group when creating. Immutable.
    type: str
  sku:
    description: Pricing tier.
    type: str
    choices: [standard, premium]
    default: standard
  enable_rbac_authorization:
    description:
      - Authorize data-plane requests with Azure role assignments (true) instead of access policies (false).
    type: bool
    default: true
  soft_delete_retention_days:
    description:
      - Days (7-90) a deleted vault and its deleted secrets stay recoverable. Azure fixes it at creation.
    type: int
    default: 90
  enable_purge_protection:
    description:
      - Forbid purging the vault and its secrets during the retention period. Cannot be turned off once on.
        Not changed when omitted.
    type: bool
  recover:
    description:
      - When the vault does not exist but a soft-deleted vault of this name does, recover it (with its
        secrets) and then apply the other options. With V(false) the task fails and says how to purge it.
    type: bool
    default: true
  timeout:
    default: 600
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
- name: Vault for the cluster's secrets
  hashistack.azure.keyvault:
    resource_group: hashistack-prod
    name: hashistack-prod-kv
    soft_delete_retention_days: 30
    enable_purge_protection: true
  register: vault

- name: The servers' identity reads secrets of this vault only
  hashistack.azure.role_assignment:
    scope: "{{ vault.keyvault.id }}"
    role: Key Vault Secrets User
    principal_id: "{{ servers.vmss.identity.principal_id }}"
    principal_type: ServicePrincipal
'''

RETURN = r'''
keyvault:
  description: The vault after the task (empty when absent).
  returned: always
  type: dict
  contains:
    id:
      description: ARM id (the scope for role assignments on the vault).
      type: str
      sample: /subscriptions/0000/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/hashistack-prod-kv
    name:
      description: Name.
      type: str
      sample: hashistack-prod-kv
    location:
      description: Location.
      type: str
      sample: westeurope
    vault_uri:
      description: Data-plane URL of the vault (O(hashistack.azure.keyvault_secret#module:vault_url)).
      type: str
      sample: https://hashistack-prod-kv.vault.azure.net/
    tenant_id:
      description: Tenant that authenticates requests to the vault.
      type: str
      sample: 72f988bf-0000-0000-0000-000000000000
    sku:
      description: Pricing tier.
      type: str
      sample: standard
    enable_rbac_authorization:
      description: Whether Azure RBAC authorizes data-plane requests.
      type: bool
      sample: true
    soft_delete_retention_days:
      description: Retention of deleted vaults and secrets.
      type: int
      sample: 90
    enable_purge_protection:
      description: Whether purge protection is on.
      type: bool
      sample: false
    tags:
      description: Tags.
      type: dict
      sample: {}
changes:
  description: Human readable list of the changes made (or that would be made in check mode).
  returned: always
  type: list
  elements: str
  sample: ["create"]
'''

import re

from ansible_collections.hashistack.azure.plugins.module_utils._lifecycle import AzureResource
from ansible_collections.hashistack.azure.plugins.module_utils._sdk import to_dict

NAME_RE = re.compile(r'^[A-Za-z](?!.*--)[A-Za-z0-9-]{1,22}[A-Za-z0-9]$')
SUBSCRIPTION_API_VERSION = '2022-12-01'


def model_from_rest(rest):
    if rest is None:
        return None
    props = rest.get('properties') or {}
    return dict(
        id=rest.get('id'),
        name=rest.get('name'),
        location=rest.get('location'),
        vault_uri=props.get('vaultUri'),
        tenant_id=props.get('tenantId'),
        sku=((props.get('sku') or {}).get('name') or '').lower() or None,
        enable_rbac_authorization=bool(props.get('enableRbacAuthorization')),
        soft_delete_retention_days=props.get('softDeleteRetentionInDays') or 90,
        enable_purge_protection=bool(props.get('enablePurgeProtection')),
        tags=rest.get('tags') or {},
    )


class KeyVault(AzureResource):
    noun = 'key vault'
    client_name = 'keyvault'
    result_key = 'keyvault'
    argument_spec = dict(
        resource_group=dict(type='str', required=True),
        name=dict(type='str', required=True),
        location=dict(type='str'),
        sku=dict(type='str', choices=['standard', 'premium'], default='standard'),
        enable_rbac_authorization=dict(type='bool', default=True),
        soft_delete_retention_days=dict(type='int', default=90),
        enable_purge_protection=dict(type='bool'),
        recover=dict(type='bool', default=True),
    )
    default_timeout = 600
    manages_tags = True
    location_from_resource_group = True
    immutable = (('location', 'location'), ('soft_delete_retention_days', 'exact'))
    immutable_hints = dict(soft_delete_retention_days='Azure fixes the retention when the vault is created; keep '
                                                      'the current value or create a vault under another name')

    def __init__(self, module):
        super().__init__(module)
        self._rest = None
        self._recovering = False

    def validate(self):
        errors = []
        if not NAME_RE.match(self.name or ''):
            errors.append('name %r must be 3-24 letters, digits and hyphens, start with a letter, end with a letter or '
                          'digit and have no consecutive hyphens' % self.name)
        if not 7 <= self.params['soft_delete_retention_days'] <= 90:
            errors.append('soft_delete_retention_days must be between 7 and 90')
        return errors

    def read(self):
        self._rest = self.get(self.client.vaults.get, self.resource_group, self.name)
        return self._rest

    def to_model(self, rest):
        return model_from_rest(rest)

    def desired(self):
        p = self.params
        return dict(name=self.name, location=p['location'], sku=p['sku'],
                    enable_rbac_authorization=p['enable_rbac_authorization'],
                    soft_delete_retention_days=p['soft_delete_retention_days'],
                    enable_purge_protection=p['enable_purge_protection'], tags=p['tags'])

    def compare(self, d, current, desired):
        refusals = []
        if current.get('enable_purge_protection') and desired.get('enable_purge_protection') is False:
            refusals.append('enable_purge_protection cannot change from true to false (Azure makes purge protection '
                            'irreversible). Fix: leave enable_purge_protection unset or true')
        for key in ('sku', 'enable_rbac_authorization', 'enable_purge_protection'):
            d.compare(key, desired.get(key))
        self.compare_tags(d, desired)
        return refusals

    def prepare_create(self, model):
        sub = self.m.rest().get('/subscriptions/%s' % self.m.subscription_id, {'api-version': SUBSCRIPTION_API_VERSION})
        model['tenant_id'] = sub.get('tenantId')
        deleted = to_dict(self.m.get('reading the soft-deleted key vaults named %s' % self.name,
                                     self.client.vaults.get_deleted, self.name, model['location']))
        if deleted is not None:
            props = deleted.get('properties') or {}
            if not self.params['recover']:
                self.m.fail('Cannot create %s: a soft-deleted vault of this name exists (deleted %s, purge scheduled %s), '
                            'and vault names stay taken until it is purged. Fix: set recover=true to recover it with its '
                            'secrets, or purge it first (az keyvault purge --name %s --location %s).'
                            % (self.what, props.get('deletionDate'), props.get('scheduledPurgeDate'), self.name,
                               model['location']))
            self._recovering = True
        return model

    def _body(self, model, base=None):
        props = dict((base or {}).get('properties') or {})
        for key in ('vaultUri', 'provisioningState', 'hsmPoolResourceId', 'privateEndpointConnections', 'createMode'):
            props.pop(key, None)
        props.update(tenantId=model['tenant_id'], sku=dict(family='A', name=model['sku']),
                     enableRbacAuthorization=model['enable_rbac_authorization'], enableSoftDelete=True)
        if 'accessPolicies' not in props:
            props['accessPolicies'] = []
        if base is None:
            props['softDeleteRetentionInDays'] = model['soft_delete_retention_days']
        if model.get('enable_purge_protection'):
            props['enablePurgeProtection'] = True
        return dict(location=model['location'], tags=model['tags'], properties=props)

    def _put(self, verb, body):
        return self.lro(verb, lambda: self.client.vaults.begin_create_or_update(self.resource_group, self.name, body))

    def create(self, model):
        if not self._recovering:
            return self._put('creating', self._body(model))
        body = dict(location=model['location'], properties=dict(tenantId=model['tenant_id'], sku=dict(family='A', name=model['sku']),
                                                                createMode='recover'))
        rest = to_dict(self._put('recovering the soft-deleted', body))
        recovered = model_from_rest(rest)
        d, errors = self.difference(recovered, model)
        if errors:
            self.m.fail('Recovered %s, but cannot apply the task to it: %s.' % (self.what, '; '.join(errors)))
        if d.changed:
            rest = self._put('updating the recovered', self._body(d.after, rest))
        return rest

    def update(self, d, current):
        return self._put('updating', self._body(d.after, self._rest))

    def _create(self):
        result = super()._create()
        if self._recovering:
            result['changes'] = ['recover soft-deleted vault'] + [c for c in result['changes'] if c != 'create']
        return result

    def delete(self, current):
        self.call('deleting', self.client.vaults.delete, self.resource_group, self.name)


def main():
    KeyVault.main()


if __name__ == '__main__':
    main()

#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) hashistack.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: keyvault_secret
short_description: Manage one secret in an Azure Key Vault
version_added: 0.2.0
description:
  - Set, read or delete one secret of a Key Vault through its data plane (C(https://<vault>.vault.azure.net)).
  - Idempotent by value - the current value is read and compared, and a new version is written only when the
    value, O(content_type) or O(tags) differ. The value never appears in the result, the diff or the
    changes unless O(return_value) asks for it.
  - The principal needs a Key Vault data role on the vault - V(Key Vault Secrets Officer) to set or delete,
    V(Key Vault Secrets User) to read (M(hashistack.azure.role_assignment) with the vault's id as scope). Owner
    and Contributor carry no data actions.
  - A secret deleted earlier and still recoverable (soft delete) is recovered before its new value is set.
options:
  vault_url:
    description:
      - Data-plane URL of the vault, as M(hashistack.azure.keyvault) returns it (C(keyvault.vault_uri)), for
        example V(https://hashistack-prod-kv.vault.azure.net/). Sovereign clouds have their own suffixes
        (C(vault.azure.cn), C(vault.usgovcloudapi.net)); a private endpoint keeps the same name.
    type: str
    required: true
  name:
    description: Secret name, 1-127 letters, digits and hyphens.
    type: str
    required: true
  value:
    description:
      - The secret value. When omitted with O(state=present) the secret is only read (it must exist).
    type: str
  content_type:
    description: Content type of the value (free text, for example V(text/plain)). Not changed when omitted.
    type: str
  return_value:
    description:
      - Return the current value as RV(secret.value). Use C(no_log) on the task when setting this, so the value
        stays out of logs and callbacks.
    type: bool
    default: false
extends_documentation_fragment:
  - hashistack.azure.azure
  - hashistack.azure.azure.state
  - hashistack.azure.azure.tags
  - hashistack.azure.azure.attributes
  - hashistack.azure.azure.full_support
author:
  - hashistack.azure maintainers (@hashistack)
'''

EXAMPLES = r'''
- name: Store the Consul gossip key
  hashistack.azure.keyvault_secret:
    vault_url: "{{ vault.keyvault.vault_uri }}"
    name: consul-gossip-key
    value: "{{ consul_gossip_key }}"
    content_type: text/plain

- name: Read it back (the value stays out of the log)
  hashistack.azure.keyvault_secret:
    vault_url: "{{ vault.keyvault.vault_uri }}"
    name: consul-gossip-key
    return_value: true
  no_log: true
  register: gossip
'''

RETURN = r'''
secret:
  description: The secret after the task, without its value unless O(return_value) (empty when absent).
  returned: always
  type: dict
  contains:
    id:
      description: Id of the current version.
      type: str
      sample: https://hashistack-prod-kv.vault.azure.net/secrets/consul-gossip-key/4387e9f3d6e14c459867679a90fd0f79
    name:
      description: Name.
      type: str
      sample: consul-gossip-key
    version:
      description: Current version.
      type: str
      sample: 4387e9f3d6e14c459867679a90fd0f79
    content_type:
      description: Content type.
      type: str
      sample: text/plain
    enabled:
      description: Whether the current version can be read.
      type: bool
      sample: true
    tags:
      description: Tags of the secret.
      type: dict
      sample: {}
    value:
      description: The value.
      type: str
      returned: when O(return_value) is true and the secret exists
      sample: "********"
changes:
  description: Human readable list of the changes made (or that would be made in check mode); never the value.
  returned: always
  type: list
  elements: str
  sample: ["value: changed (not shown)"]
'''

import re

from ansible_collections.hashistack.azure.plugins.module_utils._lifecycle import AzureResource

NAME_RE = re.compile(r'^[0-9A-Za-z-]{1,127}$')


def model_from_secret(secret):
    """SDK KeyVaultSecret (or DeletedSecret) -> model without the value."""
    if secret is None:
        return None
    props = secret.properties
    return dict(id=props.id, name=props.name, version=props.version, content_type=props.content_type,
                enabled=props.enabled, tags=dict(props.tags or {}))


class KeyVaultSecret(AzureResource):
    noun = 'secret'
    result_key = 'secret'
    argument_spec = dict(
        vault_url=dict(type='str', required=True),
        name=dict(type='str', required=True),
        value=dict(type='str', no_log=True),
        content_type=dict(type='str'),
        return_value=dict(type='bool', default=False),
    )
    manages_tags = True

    def __init__(self, module):
        super().__init__(module)
        self._value = None
        self._deleted = False

    def describe(self):
        return 'secret %s in key vault %s' % (self.name, self.params['vault_url'])

    @property
    def client(self):
        return self.m.data_client('secrets', self.params['vault_url'])

    def validate(self):
        errors = []
        if not NAME_RE.match(self.name or ''):
            errors.append('name %r must be 1-127 letters, digits and hyphens' % self.name)
        if not re.match(r'^https://[^/]+/?$', self.params['vault_url'] or ''):
            errors.append('vault_url %r must be the https URL of the vault, like https://<vault>.vault.azure.net/'
                          % self.params['vault_url'])
        return errors

    def read(self):
        secret = self.m.get('reading ' + self.what, self.client.get_secret, self.name)
        self._value = secret.value if secret is not None else None
        return secret

    def to_model(self, rest):
        return model_from_secret(rest)

    def desired(self):
        return dict(name=self.name, content_type=self.params['content_type'], tags=self.params['tags'])

    def compare(self, d, current, desired):
        value = self.params['value']
        if value is not None and value != self._value:
            d.mark_changed('value', 'changed (not shown)')
        d.compare('content_type', desired.get('content_type'))
        self.compare_tags(d, desired)

    def prepare_create(self, model):
        if self.params['value'] is None:
            self.m.fail('Cannot read %s: it does not exist. Fix: set value to create it, or check name and vault_url.'
                        % self.what)
        deleted = self.m.get('reading the deleted ' + self.what, self.client.get_deleted_secret, self.name)
        self._deleted = deleted is not None
        return model

    def _set(self, verb, model):
        secret = self.m.call('%s %s' % (verb, self.what), self.client.set_secret, self.name, self.params['value'],
                             content_type=model.get('content_type'), tags=model.get('tags'))
        self._value = secret.value
        return secret

    def create(self, model):
        if self._deleted:
            self.m.call('recovering the deleted ' + self.what,
                        lambda: self.client.begin_recover_deleted_secret(self.name).result())
        return self._set('setting', model)

    def update(self, d, current):
        if 'value' in d.changed_keys:
            return self._set('setting a new version of', d.after)
        # same value, other metadata: a properties update, no new version
        props = self.m.call('updating the properties of ' + self.what, self.client.update_secret_properties, self.name,
                            content_type=d.after.get('content_type'), tags=d.after.get('tags'))
        return _Secret(props)

    def _create(self):
        result = super()._create()
        if self._deleted:
            result['changes'] = ['recover deleted secret', 'create new version']
        return result

    def delete(self, current):
        self.m.call('deleting ' + self.what, lambda: self.client.begin_delete_secret(self.name).result())

    def run(self):
        if self.params['state'] == 'present':
            errors = self.validate()
            if errors:
                self.m.fail('Invalid parameters for %s: %s' % (self.what, '; '.join(errors)))
        result = self.apply()
        model = result['model']
        if self.params['return_value'] and model and self._value is not None:
            model = dict(model, value=self._value)
        self.m.exit(changed=result['changed'], changes=result['changes'], diff=result['diff'], secret=model)


class _Secret:
    """A KeyVaultSecret-shaped wrapper of SecretProperties (update_secret_properties returns no value)."""

    def __init__(self, props):
        self.properties = props


def main():
    KeyVaultSecret.main()


if __name__ == '__main__':
    main()

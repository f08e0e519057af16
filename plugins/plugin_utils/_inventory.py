# -*- coding: utf-8 -*-
# Copyright (c) hashistack.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The base of hashistack.azure inventory plugins (private API).

``AzureInventoryBase`` is a Constructable and Cacheable inventory plugin that:
- accepts config files ending in one of ``INVENTORY_FILE_SUFFIXES``;
- caches the *raw* fetch result (a JSON-serializable dict carrying ``format: CACHE_FORMAT``) under a key derived
  from the config path and ``fetch_options()``, and rebuilds hosts and groups from it on every load, so options
  that only shape the inventory (compose, groups, keyed_groups, hostnames, ...) need no new API call;
- fetches through an ``InventorySession`` (``with_session``), turning every failure into a parse error that says
  what failed and how to fix it;
- adds hosts with their (unsafe-wrapped) variables, default groups, compose, groups and keyed_groups
  (``add_host``), named by the first usable entry of a ``hostnames`` preference list (``choose_hostname``).

A plugin supplies ``NAME``, ``INVENTORY_FILE_SUFFIXES``, ``fetch_options()``, ``_fetch()`` and ``_populate(raw)``.
"""

from __future__ import annotations

import hashlib
import json

from ansible.errors import AnsibleError, AnsibleParserError
from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable
from ansible.utils.unsafe_proxy import wrap_var
from ansible_collections.hashistack.azure.plugins.plugin_utils._session import InventorySession, azure_code, explain


class AzureInventoryBase(BaseInventoryPlugin, Constructable, Cacheable):

    INVENTORY_FILE_SUFFIXES = ()
    CACHE_FORMAT = 1

    def verify_file(self, path):
        return bool(super().verify_file(path)) and path.endswith(self.INVENTORY_FILE_SUFFIXES)

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path)
        self._read_config_data(path)
        use_cache = bool(self.get_option('cache'))
        cache_key = self._raw_cache_key(path)
        raw = None
        if use_cache and cache:
            try:
                raw = self._cache[cache_key]
            except KeyError:
                raw = None
            if not isinstance(raw, dict) or raw.get('format') != self.CACHE_FORMAT:
                raw = None
        if raw is None:
            raw = self._fetch()
            if use_cache:
                self._cache[cache_key] = raw
        self._populate(raw)

    # ------------------------------------------------------------------ what a plugin supplies

    def fetch_options(self):
        """The options that change what is fetched (they make the cache key)."""
        return {}

    def _fetch(self):
        raise NotImplementedError

    def _populate(self, raw):
        raise NotImplementedError

    # ------------------------------------------------------------------ helpers

    def _raw_cache_key(self, path):
        digest = hashlib.sha256(json.dumps(self.fetch_options(), sort_keys=True, default=str).encode('utf-8')).hexdigest()[:12]
        return '%s_%s' % (self.get_cache_key(path), digest)

    def with_session(self, fetch):
        """``fetch(session)`` with a fresh InventorySession; any failure becomes an AnsibleParserError naming the plugin."""
        session = InventorySession(self.get_option)
        try:
            return fetch(session)
        except AnsibleError as exc:
            raise AnsibleParserError('%s: %s' % (self.NAME, to_native(exc)))
        except Exception as exc:  # pylint: disable=broad-except
            azure = azure_code()
            if isinstance(exc, azure.errors.AzureModuleError):
                raise AnsibleParserError('%s: %s' % (self.NAME, to_native(exc)))
            if isinstance(exc, azure.sdk.AzureError):
                raise AnsibleParserError('%s: %s' % (self.NAME, explain(exc, 'setting up Azure authentication', session)))
            raise
        finally:
            session.close()

    def choose_hostname(self, hostvars, choices, named, fallback, used_names, strict):
        """The first usable entry of ``choices``: a name in ``named`` (hostvars -> value) or a Jinja2 expression.

        Empty values and names already used by another host (``used_names``: name -> azure_id) are passed over;
        ``fallback(hostvars)`` is used, with a warning, when nothing is usable.
        """
        host_id = hostvars['azure_id']
        for choice in choices or []:
            if choice in named:
                candidate = named[choice](hostvars)
            else:
                try:
                    candidate = self._compose(choice, hostvars)
                except Exception as exc:  # pylint: disable=broad-except
                    if strict:
                        raise AnsibleParserError('Could not evaluate hostname expression %r for %s: %s' % (choice, host_id, to_native(exc)))
                    continue
            if candidate is None or candidate == '':
                continue
            candidate = wrap_var(to_native(candidate))
            if candidate in used_names and used_names[candidate] != host_id:
                self.display.warning('Hostname %s (from %r) is already used by %s; trying the next hostnames entry for %s.'
                                     % (candidate, choice, used_names[candidate], host_id))
                continue
            return candidate
        name = wrap_var(fallback(hostvars))
        self.display.warning('No usable hostname from the hostnames option for %s; using %s.' % (host_id, name))
        return name

    def add_host(self, hostname, hostvars, groups, strict):
        """Add a host with its variables, the given default groups (sanitized), compose, groups and keyed_groups."""
        self.inventory.add_host(hostname)
        for key, value in hostvars.items():
            self.inventory.set_variable(hostname, key, value)
        for group in groups:
            self.inventory.add_child(self.inventory.add_group(self._sanitize_group_name(group)), hostname)
        self._set_composite_vars(self.get_option('compose'), hostvars, hostname, strict=strict)
        self._add_host_to_composed_groups(self.get_option('groups'), hostvars, hostname, strict=strict)
        self._add_host_to_keyed_groups(self.get_option('keyed_groups'), hostvars, hostname, strict=strict)

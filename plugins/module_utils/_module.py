# -*- coding: utf-8 -*-
# Copyright (c) hashistack.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The base of every hashistack.azure module (private API).

``AzureModule(argument_spec, **kwargs)`` wraps ``AnsibleModule``: the auth options are merged into the argument
spec, the session is built on first use, and every Azure call goes through ``call`` (operation-level retry +
an explained failure), ``get`` (None on 404) or ``lro`` (start with retries, wait with the task's timeout).
``rest(subscription_id=None)`` is the raw REST reader (``_rest.ArmRestClient``) for list-heavy reads.

``STATE_ARGSPEC``, ``TAGS_ARGSPEC`` and ``wait_argspec(timeout)`` are the options documented by the
``hashistack.azure.azure.state``, ``.tags`` and ``.wait`` doc fragments.
"""

from __future__ import annotations

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.hashistack.azure.plugins.module_utils._auth import AUTH_OPTION_NAMES, AZURE_AUTH_ARGSPEC, AzureSession
from ansible_collections.hashistack.azure.plugins.module_utils._errors import AzureModuleError, error_facts, explain_error
from ansible_collections.hashistack.azure.plugins.module_utils._rest import ArmRestClient
from ansible_collections.hashistack.azure.plugins.module_utils._retries import RetryPolicy, wait_for_lro
from ansible_collections.hashistack.azure.plugins.module_utils._sdk import (
    AZURE_IMPORT_ERROR,
    AZURE_REQUIREMENTS,
    HAS_AZURE,
    AzureError,
    HttpResponseError,
    ResourceNotFoundError,
)

STATE_ARGSPEC = dict(state=dict(type='str', choices=['present', 'absent'], default='present'))
TAGS_ARGSPEC = dict(tags=dict(type='dict'), purge_tags=dict(type='bool', default=False))


def wait_argspec(timeout):
    """The wait/timeout options; ``timeout`` is the module's default (documented in the module's own options)."""
    return dict(wait=dict(type='bool', default=True), timeout=dict(type='int', default=timeout))


class AzureModule:
    """Thin wrapper around AnsibleModule for Azure resource modules."""

    def __init__(self, argument_spec, supports_check_mode=True, **kwargs):
        spec = dict(AZURE_AUTH_ARGSPEC)
        spec.update(argument_spec)
        self.module = AnsibleModule(argument_spec=spec, supports_check_mode=supports_check_mode, **kwargs)
        self.params = self.module.params
        self.check_mode = self.module.check_mode
        self._session = None
        # One retry budget for the whole run: the module's own timeout (if any) plus 10 minutes.
        self.retry = RetryPolicy(deadline=(self.params.get('timeout') or 0) + 600)
        if not HAS_AZURE:
            self.module.fail_json(msg=missing_required_lib(AZURE_REQUIREMENTS), exception=AZURE_IMPORT_ERROR)

    @property
    def session(self):
        if self._session is None:
            try:
                self._session = AzureSession(dict((k, self.params.get(k)) for k in AUTH_OPTION_NAMES))
            except AzureModuleError as exc:
                self.fail(str(exc))
            except AzureError as exc:
                self.fail(explain_error(exc, 'setting up Azure authentication'))
        return self._session

    @property
    def subscription_id(self):
        try:
            return self.session.subscription_id
        except AzureModuleError as exc:
            return self.fail(str(exc))

    def client(self, client_class, subscription_id=None, **kwargs):
        try:
            return self.session.client(client_class, subscription_id=subscription_id, **kwargs)
        except AzureModuleError as exc:
            return self.fail(str(exc))

    def data_client(self, name, url, **kwargs):
        """A data-plane client (``'secrets'``) for the service at ``url`` (see ``AzureSession.data_client``)."""
        try:
            return self.session.data_client(name, url, **kwargs)
        except AzureModuleError as exc:
            return self.fail(str(exc))

    def fail(self, msg, **kwargs):
        self.module.fail_json(msg=msg, **kwargs)

    def warn(self, msg):
        self.module.warn(msg)

    def call(self, what, fn, *args, **kwargs):
        """Run ``fn`` with the operation-level retry; on error fail with an explained message."""
        try:
            return self.retry.call(fn, *args, **kwargs)
        except (AzureError, AzureModuleError) as exc:
            return self.fail(explain_error(exc, what, self._session), **error_facts(exc))

    def get(self, what, fn, *args, **kwargs):
        """Like ``call`` but return None when the resource does not exist (404)."""
        def _get():
            try:
                return fn(*args, **kwargs)
            except ResourceNotFoundError:
                return None
            except HttpResponseError as exc:
                if exc.status_code == 404:
                    return None
                raise
        return self.call(what, _get)

    def lro(self, what, starter, timeout, wait=True):
        """Start an LRO with ``starter()`` and (if wait) wait up to ``timeout`` s; the whole thing is retried on transient errors."""
        def _run():
            poller = starter()
            if not wait:
                return None
            return wait_for_lro(poller, timeout, what)
        return self.call(what, _run)

    def rest(self, subscription_id=None):
        """The REST reader for ``subscription_id`` (default: the session's)."""
        return self.client(ArmRestClient, subscription_id=subscription_id)

    def exit(self, **kwargs):
        self.module.exit_json(**kwargs)

# -*- coding: utf-8 -*-
# Copyright (c) hashistack.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""How inventory plugins reach ARM (private API).

``InventorySession(get_option)`` is the only place a plugin meets the shared Azure code of ``module_utils``: the
``AzureSession`` (credential, cloud, per-request retries honouring Retry-After) is created on first use, so an
inventory served from its cache imports neither the Azure SDK nor that code and makes no request at all. It keeps
one REST client (``_rest.ArmRestClient``) per subscription and an operation-level ``RetryPolicy``.

``list_or_skip(session, subscription_id, request)`` runs one list request (``_vmss_readers.ListRequest``) and sorts
its failures: 403 and 404 become ``Skipped`` (the plugin decides: warn, skip or fail), everything else an
``AnsibleError`` naming the resource, the cause and the fix.
"""

from __future__ import annotations

from types import SimpleNamespace

from ansible.errors import AnsibleError, AnsibleParserError
from ansible.module_utils.common.text.converters import to_native

# 404 error codes meaning "this resource (or its parent) does not exist" (not e.g. an unknown resource type)
VANISHED_CODES = ('', 'resourcenotfound', 'notfound', 'resourcegroupnotfound', 'parentresourcenotfound')


def azure_code():
    """The shared Azure code (auth, errors, rest, retries, sdk), imported on first use.

    A missing SDK is an inventory parse error that says what to install.
    """
    # pylint: disable=import-outside-toplevel
    try:
        import azure.mgmt.core  # noqa: F401 pylint: disable=unused-import
        from ansible_collections.hashistack.azure.plugins.module_utils import _auth, _errors, _rest, _retries, _sdk
    except ImportError as exc:
        raise AnsibleParserError('hashistack.azure inventory plugins need the Azure SDK for Python '
                                 '(azure-identity, azure-mgmt-core; see the collection requirements.txt): %s' % to_native(exc))
    return SimpleNamespace(auth=_auth, errors=_errors, rest=_rest, retries=_retries, sdk=_sdk)


class Skipped(Exception):
    """A list whose target vanished (404) or is not readable (403); the caller decides what to do."""

    def __init__(self, status, what, message, code=None):
        super().__init__(message)
        self.status = status
        self.what = what
        self.code = (code or '').lower()

    @property
    def vanished(self):
        return self.status == 404 and self.code in VANISHED_CODES


class InventorySession:
    """The shared AzureSession, created lazily, with one REST client per subscription."""

    def __init__(self, get_option):
        self._get_option = get_option
        self._session = None
        self._clients = {}
        self._retry = None

    @property
    def azure_session(self):
        if self._session is None:
            azure = azure_code()
            self._session = azure.auth.AzureSession(azure.auth.auth_options_from_plugin(self._get_option))
            self._retry = azure.retries.RetryPolicy(attempts=3, deadline=300)
        return self._session

    def peek_session(self):
        """The shared AzureSession if it was created (never creates it)."""
        return self._session

    def default_subscription(self):
        return self.azure_session.subscription_id

    def prepare(self, subscription_id):
        """Create the client of a subscription (before worker threads use it)."""
        self._client(subscription_id)

    def _client(self, subscription_id):
        if subscription_id not in self._clients:
            self._clients[subscription_id] = self.azure_session.client(azure_code().rest.ArmRestClient, subscription_id=subscription_id)
        return self._clients[subscription_id]

    def list_pages(self, subscription_id, path, params):
        return self._client(subscription_id).list(path, params)

    def retry(self, fn):
        if self._retry is None:
            return fn()
        return self._retry.call(fn)

    def close(self):
        for client in self._clients.values():
            client.close()
        self._clients = {}


def explain(exc, what, session):
    """The shared explanation of an Azure error, with the session's auth description when there is one."""
    peek = getattr(session, 'peek_session', None)
    return azure_code().errors.explain_error(exc, what, peek() if peek else None)


def list_or_skip(session, subscription_id, request):
    """Every item of one list request, under the session's retry; failures sorted into Skipped / AnsibleError."""
    azure = azure_code()
    try:
        return session.retry(lambda: session.list_pages(subscription_id, request.path, request.params))
    except azure.sdk.ClientAuthenticationError as exc:
        raise AnsibleError(explain(exc, request.what, session))
    except azure.sdk.HttpResponseError as exc:
        status, code, _message = azure.errors.error_parts(exc)
        if status in (403, 404):
            raise Skipped(status, request.what, explain(exc, request.what, session), code)
        raise AnsibleError(explain(exc, request.what, session))
    except azure.sdk.AzureError as exc:
        raise AnsibleError(explain(exc, request.what, session))

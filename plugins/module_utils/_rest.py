# -*- coding: utf-8 -*-
# Copyright (c) hashistack.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""A minimal ARM REST client for reads (private API).

``ArmRestClient`` is the azure-core / azure-mgmt-core policy stack of the generated management clients without
their models and operations: ``AzureSession.client(ArmRestClient, subscription_id=...)`` builds it like any
azure-mgmt client (credential, base URL and token scope of the cloud, CA bundle, and the collection's per-request
retries, Retry-After honoured by azure-core's RetryPolicy), so authentication and retries stay defined once.
Reads of scale sets, their VMs and NICs use it (``vmss_info``, the inventory): the raw JSON is kept as ARM sends
it (the REST API reference's shapes), and importing a full management client would cost more start-up time than
the whole read.

``get(path, params)``   one resource (HTTP errors raised as azure-core ``HttpResponseError``).
``list(path, params)``  every item of a list operation, following ``nextLink``.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode


class ArmRestClient:
    """GETs against ARM with the management clients' pipeline."""

    def __init__(self, credential, subscription_id, base_url='https://management.azure.com/', credential_scopes=None,
                 **kwargs):
        # pylint: disable=import-outside-toplevel
        from azure.core.pipeline import policies
        from azure.mgmt.core import ARMPipelineClient
        from azure.mgmt.core.policies import ARMChallengeAuthenticationPolicy, ARMHttpLoggingPolicy

        self.subscription_id = subscription_id
        kwargs.pop('polling_interval', None)
        scopes = list(credential_scopes or [base_url.rstrip('/') + '/.default'])
        user_agent = kwargs.pop('user_agent', None)
        stack = [
            policies.RequestIdPolicy(**kwargs),
            policies.HeadersPolicy(**kwargs),
            policies.UserAgentPolicy(user_agent, sdk_moniker='hashistack-azure-rest', **kwargs),
            policies.ProxyPolicy(**kwargs),
            policies.ContentDecodePolicy(**kwargs),
            policies.RedirectPolicy(**kwargs),
            policies.RetryPolicy(**kwargs),
            ARMChallengeAuthenticationPolicy(credential, *scopes, **kwargs),
            policies.CustomHookPolicy(**kwargs),
            policies.NetworkTraceLoggingPolicy(**kwargs),
            policies.SensitiveHeaderCleanupPolicy(**kwargs),
            ARMHttpLoggingPolicy(**kwargs),
        ]
        self._client = ARMPipelineClient(base_url=base_url, policies=stack, **kwargs)

    def _get(self, url):
        from azure.core.rest import HttpRequest  # pylint: disable=import-outside-toplevel
        response = self._client.send_request(HttpRequest('GET', self._client.format_url(url)))
        response.raise_for_status()
        return response.json() or {}

    def get(self, path, params):
        return self._get(_url(path, params))

    def list(self, path, params):
        url = _url(path, params)
        items = []
        seen = set()
        while url:
            body = self._get(url)
            items.extend(body.get('value') or [])
            url = body.get('nextLink')
            if url in seen:   # a server repeating a nextLink must not loop forever
                break
            seen.add(url)
        return items

    def close(self):
        self._client.close()


def _url(path, params):
    return '%s?%s' % (path, urlencode(params, quote_via=quote, safe="/'"))

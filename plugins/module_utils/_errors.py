# -*- coding: utf-8 -*-
# Copyright (c) hashistack.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Azure errors: what they are and what they mean for a person (private API).

``AzureModuleError``              an error whose message is meant for a person (resource, cause, fix).
``AzureOperationTimeout``         a long-running operation did not finish in time.
``error_parts(exc)``              (status, code, message) of an azure-core exception.
``is_transient(exc)``             whether retrying the whole operation may succeed (used by ``_retries``).
``explain_error(exc, what, session=None)``  message naming the resource, the cause and the fix.
``error_facts(exc)``              status_code / error_code for a module's failure result.
"""

from __future__ import annotations

import json
import re

from ansible_collections.hashistack.azure.plugins.module_utils._sdk import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)


class AzureModuleError(Exception):
    """An error with a message meant for a person (resource, cause, fix)."""


class AzureOperationTimeout(AzureModuleError):
    """A long-running operation did not finish in time."""


TRANSIENT_STATUS = frozenset([408, 429, 500, 502, 503, 504])
TRANSIENT_CODES = frozenset(c.lower() for c in (
    'InternalServerError', 'ServiceUnavailable', 'TooManyRequests', 'RetryableError', 'GatewayTimeout',
    'OperationPreempted', 'InternalOperationError', 'InternalExecutionError', 'RequestTimeout',
    'SubscriptionRequestsThrottled', 'ResourceGroupRequestsThrottled', 'ServerTimeout'))


def error_parts(exc):
    """Return (status, code, message) of an azure-core exception (best effort)."""
    status = getattr(exc, 'status_code', None)
    code = None
    message = None
    err = getattr(exc, 'error', None)
    if err is not None:
        code = getattr(err, 'code', None)
        message = getattr(err, 'message', None)
    response = getattr(exc, 'response', None)
    if (not code or not message) and response is not None:
        try:
            body = json.loads(response.text())
            body = body.get('error', body) if isinstance(body, dict) else {}
            code = code or body.get('code')
            message = message or body.get('message')
        except Exception:  # pylint: disable=broad-except
            pass
    if not message:
        message = getattr(exc, 'message', None) or str(exc)
    if status is None and response is not None:
        status = getattr(response, 'status_code', None)
    return status, code, message


def is_transient(exc):
    """True when retrying the whole operation may succeed."""
    if isinstance(exc, ClientAuthenticationError):
        return False
    if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
        return True
    if isinstance(exc, HttpResponseError):
        status, code, _msg = error_parts(exc)
        if status in TRANSIENT_STATUS:
            return True
        if code and code.lower() in TRANSIENT_CODES:
            return True
    return False


_AUTHZ_RE = re.compile(r"object id '(?P<principal>[^']+)'.*?action '(?P<action>[^']+)' over scope '(?P<scope>[^']+)'", re.S)
_KV_ACTION_RE = re.compile(r"Action: '(?P<action>[^']+)'\s*Resource: '(?P<resource>[^']+)'", re.S)
_KV_CALLER_RE = re.compile(r"Caller: [^\n]*?oid=(?P<oid>[0-9a-fA-F-]+)")
_QUOTA_RE = {
    'family': re.compile(r"exceeding approved (?P<v>[\w-]+?) Cores quota", re.I),
    'total': re.compile(r"exceeding approved (?P<v>Total Regional) Cores quota", re.I),
    'location': re.compile(r"Location:\s*(?P<v>[\w-]+)", re.I),
    'limit': re.compile(r"Current Limit:\s*(?P<v>\d+)", re.I),
    'usage': re.compile(r"Current Usage:\s*(?P<v>\d+)", re.I),
    'required': re.compile(r"Additional Required:\s*(?P<v>\d+)", re.I),
}


def parse_quota_message(message):
    """Extract family, location, limit, usage, required and short from an ARM quota error message."""
    out = {}
    for key, regex in _QUOTA_RE.items():
        match = regex.search(message or '')
        if match:
            out[key] = match.group('v')
    if 'total' in out:
        out['family'] = 'regional total (cores)'
    for key in ('limit', 'usage', 'required'):
        if key in out:
            out[key] = int(out[key])
    if all(k in out for k in ('limit', 'usage', 'required')):
        out['short'] = out['usage'] + out['required'] - out['limit']
    return out


def explain_error(exc, what, session=None):
    """Message for a person: what failed, why, how to fix it."""
    if isinstance(exc, AzureModuleError):
        return str(exc)
    auth = session.describe_auth() if session is not None else 'the configured credential'
    if isinstance(exc, ClientAuthenticationError) or getattr(exc, 'status_code', None) == 401:
        _s, _c, message = error_parts(exc)
        return ('Authentication failed while %s using %s: %s. Fix: check the credential (set AZURE_CLIENT_ID, AZURE_SECRET, '
                'AZURE_TENANT and AZURE_SUBSCRIPTION_ID, or ARM_CLIENT_ID, ARM_CLIENT_SECRET, ARM_TENANT_ID, ARM_SUBSCRIPTION_ID; '
                'or use auth_source=cli after "az login", or auth_source=msi on an Azure VM).' % (what, auth, _first_line(message)))
    if isinstance(exc, ServiceRequestError):
        hint = ''
        text = str(exc)
        if 'CERTIFICATE' in text.upper() or 'SSL' in text.upper():
            hint = ' The TLS certificate was not trusted: set ca_bundle (or AZURE_CA_BUNDLE / REQUESTS_CA_BUNDLE) to the CA file.'
        endpoint = session.cloud['resource_manager'] if session is not None else 'Azure Resource Manager'
        return 'Cannot reach %s while %s: %s.%s Check cloud_environment and network access.' % (endpoint, what, _first_line(text), hint)
    if isinstance(exc, ServiceResponseError):
        return 'Azure closed the connection while %s: %s. It was retried; try again later.' % (what, _first_line(str(exc)))
    if not isinstance(exc, HttpResponseError):
        return 'Unexpected error while %s: %s' % (what, exc)
    status, code, message = error_parts(exc)
    code_l = (code or '').lower()
    first = _first_line(message)
    if status == 403 and 'forbiddenbyrbac' in ((message or '') + ' ' + _inner_code(exc)).lower() or (
            status == 403 and _KV_ACTION_RE.search(message or '')):
        match = _KV_ACTION_RE.search(message or '')
        action, resource = (match.group('action'), match.group('resource')) if match else ('?', '?')
        caller = _KV_CALLER_RE.search(message or '')
        return ('Permission denied while %s: %s lacks the data action %s on %s (the vault uses Azure RBAC; Owner and '
                'Contributor include no data actions). Fix: assign that principal a Key Vault data role on the vault - '
                'Key Vault Secrets User to read secrets, Key Vault Secrets Officer to set or delete them - e.g. '
                'hashistack.azure.role_assignment with scope=<vault id>, role="Key Vault Secrets Officer", '
                'principal_id=%s.' % (what, 'principal %s' % caller.group('oid') if caller else auth, action, resource,
                                      caller.group('oid') if caller else '<object id>'))
    if status == 403 and 'accessdenied' in _inner_code(exc).lower():
        return ('Permission denied while %s using %s: %s Fix: the vault uses access policies; add a secrets access policy '
                'for the principal, or switch the vault to Azure RBAC (enable_rbac_authorization) and assign a Key Vault '
                'role.' % (what, auth, first))
    if status == 403 or code_l in ('authorizationfailed', 'linkedauthorizationfailed'):
        match = _AUTHZ_RE.search(message or '')
        if match:
            return ('Permission denied while %s: principal %s lacks action %s on scope %s. Fix: grant it a role that includes %s '
                    '(for example Contributor) on that scope, e.g. az role assignment create --assignee %s --role Contributor '
                    '--scope %s.' % (what, match.group('principal'), match.group('action'), match.group('scope'),
                                     match.group('action'), match.group('principal'), match.group('scope')))
        return 'Permission denied while %s using %s: %s. Fix: grant the principal a role with this permission on the scope.' % (what, auth, first)
    if code_l == 'principalnotfound':
        return ('%s failed: %s Fix: check the principal id; for a managed identity created moments ago set principal_type '
                '(for example ServicePrincipal) and re-run after a minute.' % (_cap(what), first))
    if code_l == 'resourcegroupnotfound':
        return ('%s failed: %s Fix: create the resource group first (hashistack.azure.resource_group) or correct resource_group.'
                % (_cap(what), first))
    if code_l in ('operationnotallowed', 'quotaexceeded') and 'quota' in (message or '').lower():
        quota = parse_quota_message(message)
        if quota.get('family') and quota.get('location') and 'short' in quota:
            return ('vCPU quota exceeded while %s: family %s in %s has limit %d and usage %d; %d more vCPUs are needed, %d short. '
                    'Fix: request a quota increase for %s in %s, choose a smaller size/capacity, or run '
                    'hashistack.azure.compute_quota_info to find a location with room.'
                    % (what, quota['family'], quota['location'], quota['limit'], quota['usage'], quota['required'],
                       quota['short'], quota['family'], quota['location']))
        return 'Quota exceeded while %s: %s Fix: request a quota increase or use another location.' % (what, first)
    if status == 429:
        return ('Azure kept throttling requests while %s (HTTP 429, retried with Retry-After until the retry budget ran out): %s '
                'Fix: run again later or with fewer parallel tasks.' % (what, first))
    if status in (500, 502, 503, 504) or code_l in TRANSIENT_CODES:
        return 'Azure failed transiently while %s (HTTP %s %s, retried): %s Fix: run the task again.' % (what, status, code or '', first)
    if status == 404 or isinstance(exc, ResourceNotFoundError):
        return '%s failed: not found (%s): %s' % (_cap(what), code or status, first)
    if code_l == 'roledefinitionhasassignments':
        return ('%s failed: %s Fix: delete the role assignments that use the role first (hashistack.azure.role_assignment with '
                'state=absent), then re-run.' % (_cap(what), first))
    if code_l == 'roledefinitionwithsamenameexists':
        return ('%s failed: %s Role names are unique in the Microsoft Entra tenant. Fix: choose another name, or set id to the '
                'GUID of the existing role to manage it.' % (_cap(what), first))
    if status == 409:
        return 'Conflict while %s (%s): %s Fix: wait for the other operation on this resource to finish, then re-run.' % (what, code, first)
    return 'Azure rejected %s (HTTP %s %s): %s' % (what, status, code or '', first)


def _inner_code(exc):
    """The innererror code of a Key Vault error body ('ForbiddenByRbac', 'AccessDenied'), '' when none."""
    response = getattr(exc, 'response', None)
    try:
        return str(json.loads(response.text())['error']['innererror']['code'])
    except Exception:  # pylint: disable=broad-except
        return ''


def _first_line(text):
    text = (text or '').strip()
    return text.splitlines()[0] if text else ''


def _cap(text):
    return text[:1].upper() + text[1:] if text else text


def error_facts(exc):
    """status_code and error_code of an HTTP error, for the module result (empty for other errors)."""
    if isinstance(exc, HttpResponseError):
        status, code, _m = error_parts(exc)
        return dict(status_code=status, error_code=code)
    return {}

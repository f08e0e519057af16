# -*- coding: utf-8 -*-
# Copyright (c) hashistack.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Shared Azure plumbing for hashistack.azure modules and plugins (private API).

Public surface (stable; the inventory plugin builds on it):

``AZURE_AUTH_ARGSPEC``
    dict to merge into a module ``argument_spec``; the same options are documented by the
    ``hashistack.azure.azure`` doc fragment (also usable by inventory plugins).

``AUTH_OPTION_NAMES``
    tuple of the option names in ``AZURE_AUTH_ARGSPEC``.

``auth_options_from_plugin(get_option)``
    build the options dict from an inventory/lookup plugin's ``get_option``.

``AzureSession(options, env=None)``
    resolves the auth settings (module params > environment > credential file > CLI/MSI), the
    cloud (``AzureCloud``, ``AzureChinaCloud``, ``AzureUSGovernment`` or an https URL whose
    ``/metadata/endpoints`` describes the cloud) and builds the azure-identity credential.
    ``session.subscription_id``, ``session.cloud`` (dict), ``session.credential``,
    ``session.client(ComputeManagementClient)`` or ``session.client('compute')`` (lazy import; cached, base_url + credential_scopes from the
    cloud, ``ca_bundle`` -> ``connection_verify``), ``session.describe_auth()`` (human text, no secrets).

``RetryPolicy(attempts=3, deadline=600).call(fn, *args, **kwargs)`` / ``is_transient(exc)`` /
``retry_after_seconds(exc)``
    complementary retry around whole SDK operations (see "Retries" below).

``wait_for_lro(poller, timeout, what)``
    waits for an SDK ``LROPoller``; raises ``AzureOperationTimeout`` with a clear message.

``explain_error(exc, what, session=None)``
    turns azure-core exceptions into a message naming the resource, the cause and the fix.

``AzureModuleError``
    exception carrying such a message; ``AzureSession`` raises it for configuration problems.

``to_dict(model)``
    SDK model (typespec or msrest generation) -> REST-shaped dict (camelCase keys).

``AzureModule``
    small base for modules: argument spec merged with the auth options, check mode, lazy
    session, ``call`` (retry + error translation), ``get`` (None on 404), ``lro`` (start with
    retries, wait with timeout).

Retries
-------
Two layers, deliberately not multiplied blindly:

1. Per HTTP request, the SDK pipeline ``RetryPolicy`` (configured here with
   ``retry_total=PIPELINE_RETRY_TOTAL`` (3), exponential backoff capped at 30 s, honouring
   ``Retry-After``/``x-ms-retry-after-ms``) re-sends 408/429/5xx and connection failures.
   This covers LRO status polls too, so a throttled poll does not restart the operation.
2. ``RetryPolicy`` here wraps a *whole* operation (a GET, or start + wait of a PUT/DELETE/POST,
   all idempotent in ARM). It only acts when layer 1 gave up or when an LRO *ended* in a
   transient failure (operation status ``Failed`` with a 5xx/throttling code), which layer 1
   cannot see. It makes at most ``attempts`` (3) tries, sleeps honouring ``Retry-After`` (falling
   back to exponential backoff), and never sleeps beyond a shared ``deadline`` (monotonic clock)
   for the whole module run. Worst case per operation is therefore
   ``(PIPELINE_RETRY_TOTAL + 1) * attempts`` = 12 HTTP attempts, all inside the deadline,
   instead of an unbounded product of retry loops.
"""

from __future__ import annotations

import configparser
import email.utils
import importlib
import json
import os
import re
import shutil
import subprocess
import time
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible.module_utils.urls import open_url

AZURE_IMPORT_ERROR = None
try:
    from azure.core.exceptions import (
        AzureError,
        ClientAuthenticationError,
        HttpResponseError,
        ResourceNotFoundError,
        ServiceRequestError,
        ServiceResponseError,
    )
    from azure.identity import (
        AzureCliCredential,
        ClientSecretCredential,
        ManagedIdentityCredential,
    )
    HAS_AZURE = True
except ImportError:
    AZURE_IMPORT_ERROR = traceback.format_exc()
    HAS_AZURE = False

    class AzureError(Exception):  # type: ignore[no-redef]
        """Placeholder so isinstance checks work without the SDK."""

    class HttpResponseError(AzureError):  # type: ignore[no-redef]
        """Placeholder."""

    class ClientAuthenticationError(HttpResponseError):  # type: ignore[no-redef]
        """Placeholder."""

    class ResourceNotFoundError(HttpResponseError):  # type: ignore[no-redef]
        """Placeholder."""

    class ServiceRequestError(AzureError):  # type: ignore[no-redef]
        """Placeholder."""

    class ServiceResponseError(AzureError):  # type: ignore[no-redef]
        """Placeholder."""


AZURE_REQUIREMENTS = 'azure-identity and azure-mgmt-compute, azure-mgmt-network, azure-mgmt-resource, azure-mgmt-authorization'

PIPELINE_RETRY_TOTAL = 3
DEFAULT_POLLING_INTERVAL = 2
USER_AGENT = 'hashistack.azure'

AUTH_SOURCES = ['auto', 'env', 'cli', 'msi', 'credential_file']

# Short names for ``AzureSession.client``; the SDK package is imported only when first used (the compute and
# network packages take seconds to import, and most module runs need only one of them).
CLIENT_CLASSES = dict(
    compute=('azure.mgmt.compute', 'ComputeManagementClient'),
    network=('azure.mgmt.network', 'NetworkManagementClient'),
    resource=('azure.mgmt.resource.resources', 'ResourceManagementClient'),
    authorization=('azure.mgmt.authorization', 'AuthorizationManagementClient'),
)


def load_client_class(name):
    """Import and return the SDK client class for a short name (compute, network, resource, authorization)."""
    try:
        module, cls = CLIENT_CLASSES[name]
    except KeyError:
        raise AzureModuleError('Unknown client %r; use one of %s' % (name, ', '.join(sorted(CLIENT_CLASSES))))
    try:
        return getattr(importlib.import_module(module), cls)
    except ImportError as exc:
        raise AzureModuleError('%s (%s)' % (missing_required_lib(module.replace('.', '-').replace('-resources', '')), exc))


AZURE_AUTH_ARGSPEC = dict(
    auth_source=dict(type='str', choices=AUTH_SOURCES),
    profile=dict(type='str'),
    subscription_id=dict(type='str'),
    client_id=dict(type='str'),
    secret=dict(type='str', no_log=True, aliases=['client_secret']),
    tenant=dict(type='str', aliases=['tenant_id']),
    cloud_environment=dict(type='str'),
    ca_bundle=dict(type='path'),
)

AUTH_OPTION_NAMES = tuple(AZURE_AUTH_ARGSPEC)

# Environment variables, first one set wins.
ENV_VARS = dict(
    auth_source=('AZURE_AUTH_SOURCE',),
    profile=('AZURE_PROFILE',),
    subscription_id=('AZURE_SUBSCRIPTION_ID', 'ARM_SUBSCRIPTION_ID'),
    client_id=('AZURE_CLIENT_ID', 'ARM_CLIENT_ID'),
    secret=('AZURE_SECRET', 'AZURE_CLIENT_SECRET', 'ARM_CLIENT_SECRET'),
    tenant=('AZURE_TENANT', 'AZURE_TENANT_ID', 'ARM_TENANT_ID'),
    cloud_environment=('AZURE_CLOUD_ENVIRONMENT', 'ARM_ENVIRONMENT'),
    ca_bundle=('AZURE_CA_BUNDLE',),
)

CREDENTIAL_FILE_ENV = 'AZURE_CREDENTIAL_FILE'
DEFAULT_CREDENTIAL_FILE = '~/.azure/credentials'

KNOWN_CLOUDS = {
    'AzureCloud': dict(
        resource_manager='https://management.azure.com/',
        authority='https://login.microsoftonline.com',
        audience='https://management.azure.com',
    ),
    'AzureChinaCloud': dict(
        resource_manager='https://management.chinacloudapi.cn/',
        authority='https://login.chinacloudapi.cn',
        audience='https://management.chinacloudapi.cn',
    ),
    'AzureUSGovernment': dict(
        resource_manager='https://management.usgovcloudapi.net/',
        authority='https://login.microsoftonline.us',
        audience='https://management.usgovcloudapi.net',
    ),
}
CLOUD_ALIASES = {
    'azurepubliccloud': 'AzureCloud', 'public': 'AzureCloud', 'azurecloud': 'AzureCloud',
    'azurechinacloud': 'AzureChinaCloud', 'china': 'AzureChinaCloud',
    'azureusgovernment': 'AzureUSGovernment', 'azureusgovernmentcloud': 'AzureUSGovernment', 'usgovernment': 'AzureUSGovernment',
}
METADATA_API_VERSION = '2022-09-01'
IMDS_SUBSCRIPTION_URL = 'http://169.254.169.254/metadata/instance/compute/subscriptionId?api-version=2021-02-01&format=text'


class AzureModuleError(Exception):
    """An error with a message meant for a person (resource, cause, fix)."""


class AzureOperationTimeout(AzureModuleError):
    """A long-running operation did not finish in time."""


def auth_options_from_plugin(get_option):
    """Return the auth options dict from a plugin's ``get_option`` (missing options -> None)."""
    options = {}
    for name in AUTH_OPTION_NAMES:
        try:
            options[name] = get_option(name)
        except KeyError:
            options[name] = None
    return options


def _from_env(env, name):
    for var in ENV_VARS.get(name, ()):
        value = env.get(var)
        if value:
            return value, var
    return None, None


def read_credential_file(path, profile):
    """Read one profile of an azure.azcollection style INI credential file; {} when absent."""
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        return {}
    parser = configparser.ConfigParser()
    try:
        parser.read(path)
    except configparser.Error as exc:
        raise AzureModuleError('Cannot parse Azure credential file %s: %s' % (path, exc))
    if not parser.has_section(profile):
        return {}
    return dict(parser.items(profile))


# --------------------------------------------------------------------------- clouds

def resolve_cloud(name_or_url, ca_bundle=None, timeout=15):
    """Return dict(name, resource_manager, authority, audience, credential_scope, custom)."""
    value = (name_or_url or 'AzureCloud').strip()
    if value.lower().startswith('http://'):
        raise AzureModuleError('cloud_environment %s must use https' % value)
    if value.lower().startswith('https://'):
        url = value.rstrip('/') + '/metadata/endpoints?api-version=' + METADATA_API_VERSION
        try:
            response = open_url(url, method='GET', timeout=timeout, ca_path=ca_bundle,
                                headers={'Accept': 'application/json'}, http_agent=USER_AGENT)
            data = json.loads(response.read())
        except Exception as exc:  # pylint: disable=broad-except
            hint = '' if ca_bundle else ' If the endpoint uses a private CA, set ca_bundle (or AZURE_CA_BUNDLE).'
            raise AzureModuleError('Cannot read cloud metadata from %s: %s.%s' % (url, exc, hint))
        return cloud_from_metadata(data, value)
    canonical = value if value in KNOWN_CLOUDS else CLOUD_ALIASES.get(value.lower())
    if canonical is None:
        raise AzureModuleError('Unknown cloud_environment %r: use one of %s or an https URL whose '
                               '/metadata/endpoints describes the cloud' % (value, ', '.join(sorted(KNOWN_CLOUDS))))
    cloud = dict(KNOWN_CLOUDS[canonical])
    cloud.update(name=canonical, custom=False, credential_scope=cloud['audience'].rstrip('/') + '/.default')
    return cloud


def cloud_from_metadata(data, url):
    """Build the cloud dict from an ARM ``/metadata/endpoints`` document (list or Azure Stack dict)."""
    if isinstance(data, list):
        if not data:
            raise AzureModuleError('Cloud metadata at %s is an empty list' % url)
        data = data[0]
    auth = data.get('authentication') or {}
    resource_manager = data.get('resourceManager') or url
    authority = auth.get('loginEndpoint')
    if not authority:
        raise AzureModuleError('Cloud metadata at %s has no authentication.loginEndpoint' % url)
    audiences = auth.get('audiences') or [resource_manager]
    audience = audiences[0].rstrip('/')
    return dict(
        name=data.get('name') or url,
        resource_manager=resource_manager.rstrip('/') + '/',
        authority=authority.rstrip('/'),
        audience=audience,
        credential_scope=audience + '/.default',
        custom=True,
    )


# --------------------------------------------------------------------------- settings

def resolve_settings(options, env=None):
    """Merge module/plugin options with environment and credential file.

    Returns a dict with auth_source, subscription_id, client_id, secret, tenant,
    cloud_environment, ca_bundle, profile and ``origin`` (name -> where the value came from).
    """
    env = os.environ if env is None else env
    options = dict((k, v) for k, v in (options or {}).items() if v not in (None, ''))
    settings = {}
    origin = {}
    for name in AUTH_OPTION_NAMES:
        if name in options:
            settings[name] = options[name]
            origin[name] = 'parameter %s' % name
            continue
        value, var = _from_env(env, name)
        if value is not None:
            settings[name] = value
            origin[name] = 'environment variable %s' % var
    settings.setdefault('auth_source', 'auto')
    if settings['auth_source'] not in AUTH_SOURCES:
        raise AzureModuleError('auth_source %r is not one of %s' % (settings['auth_source'], ', '.join(AUTH_SOURCES)))
    profile = settings.setdefault('profile', 'default')
    cred_path = env.get(CREDENTIAL_FILE_ENV) or DEFAULT_CREDENTIAL_FILE
    settings['credential_file'] = os.path.expanduser(cred_path)

    source = settings['auth_source']
    explicit_sp = all(settings.get(k) for k in ('client_id', 'secret', 'tenant'))
    file_values = {}
    if source == 'credential_file' or (source == 'auto' and not explicit_sp):
        file_values = read_credential_file(cred_path, profile)
        if source == 'credential_file' and not file_values:
            raise AzureModuleError('auth_source=credential_file but %s has no [%s] profile. Write client_id, secret, tenant and '
                                   'subscription_id under [%s] or choose another auth_source.' % (settings['credential_file'], profile, profile))
        for name in ('subscription_id', 'client_id', 'secret', 'tenant', 'cloud_environment'):
            if file_values.get(name) and (source == 'credential_file' or not settings.get(name)):
                settings[name] = file_values[name]
                origin[name] = 'credential file %s [%s]' % (settings['credential_file'], profile)
        explicit_sp = all(settings.get(k) for k in ('client_id', 'secret', 'tenant'))

    if source == 'auto':
        if explicit_sp:
            source = 'service_principal'
        elif shutil.which('az'):
            source = 'cli'
        else:
            source = 'msi'
    elif source in ('env', 'credential_file'):
        missing = [k for k in ('client_id', 'secret', 'tenant') if not settings.get(k)]
        if missing:
            raise AzureModuleError('auth_source=%s needs a service principal but %s %s not set. Set AZURE_CLIENT_ID, AZURE_SECRET '
                                   'and AZURE_TENANT (or ARM_CLIENT_ID, ARM_CLIENT_SECRET, ARM_TENANT_ID)%s.'
                                   % (settings['auth_source'], ', '.join(missing), 'is' if len(missing) == 1 else 'are',
                                      ' or fill the [%s] profile of %s' % (profile, settings['credential_file'])
                                      if settings['auth_source'] == 'credential_file' else ''))
        source = 'service_principal'
    settings['resolved_source'] = source
    settings['origin'] = origin
    return settings


def _cli_subscription():
    az = shutil.which('az')
    if not az:
        return None
    try:
        out = subprocess.run([az, 'account', 'show', '--query', 'id', '-o', 'tsv'], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _imds_subscription():
    try:
        response = open_url(IMDS_SUBSCRIPTION_URL, headers={'Metadata': 'true'}, timeout=3, use_proxy=False)
        return response.read().decode('utf-8').strip() or None
    except Exception:  # pylint: disable=broad-except
        return None


class AzureSession:
    """Credential, cloud and cached SDK clients for one module run / plugin parse."""

    def __init__(self, options=None, env=None):
        if not HAS_AZURE:
            raise AzureModuleError(missing_required_lib(AZURE_REQUIREMENTS))
        self.settings = resolve_settings(options, env)
        self.ca_bundle = self.settings.get('ca_bundle')
        if self.ca_bundle:
            self.ca_bundle = os.path.expanduser(self.ca_bundle)
            if not os.path.isfile(self.ca_bundle):
                raise AzureModuleError('ca_bundle %s does not exist' % self.ca_bundle)
        self.cloud = resolve_cloud(self.settings.get('cloud_environment'), self.ca_bundle)
        self.credential = self._build_credential()
        self._subscription_id = self.settings.get('subscription_id')
        self._clients = {}

    @property
    def subscription_id(self):
        if not self._subscription_id:
            source = self.settings['resolved_source']
            if source == 'cli':
                self._subscription_id = _cli_subscription()
            elif source == 'msi':
                self._subscription_id = _imds_subscription()
            if not self._subscription_id:
                raise AzureModuleError('No Azure subscription id: set subscription_id, AZURE_SUBSCRIPTION_ID or ARM_SUBSCRIPTION_ID '
                                       '(auth source: %s).' % self.describe_auth())
        return self._subscription_id

    def _common_kwargs(self):
        kwargs = {}
        if self.ca_bundle:
            kwargs['connection_verify'] = self.ca_bundle
        return kwargs

    def _build_credential(self):
        source = self.settings['resolved_source']
        kwargs = self._common_kwargs()
        if source == 'service_principal':
            if self.cloud['custom']:
                kwargs['disable_instance_discovery'] = True
            return ClientSecretCredential(self.settings['tenant'], self.settings['client_id'], self.settings['secret'],
                                          authority=self.cloud['authority'], **kwargs)
        if source == 'cli':
            return AzureCliCredential(tenant_id=self.settings.get('tenant'))
        return ManagedIdentityCredential(client_id=self.settings.get('client_id'), **kwargs)

    def describe_auth(self):
        """Human description of the credential source, never secrets."""
        source = self.settings['resolved_source']
        origin = self.settings['origin']
        if source == 'service_principal':
            where = sorted(set(origin.get(k, '?') for k in ('client_id', 'secret', 'tenant')))
            return ('service principal client_id=%s tenant=%s (from %s) against %s'
                    % (self.settings.get('client_id'), self.settings.get('tenant'), ', '.join(where), self.cloud['authority']))
        if source == 'cli':
            return 'Azure CLI login (az account) for %s' % self.cloud['name']
        ident = self.settings.get('client_id')
        return 'managed identity%s via the instance metadata service' % (' client_id=%s' % ident if ident else '')

    def client(self, client_class, subscription_id=None, **kwargs):
        """Return a cached SDK management client of ``client_class`` for this session's cloud.

        ``subscription_id`` overrides the session's subscription (cross-subscription peering);
        other keyword arguments go to the client constructor.
        """
        if isinstance(client_class, str):
            client_class = load_client_class(client_class)
        subscription_id = subscription_id or self.subscription_id
        key = (client_class, subscription_id, tuple(sorted(kwargs.items())))
        if key not in self._clients:
            options = self._common_kwargs()
            options.update(
                base_url=self.cloud['resource_manager'],
                credential_scopes=[self.cloud['credential_scope']],
                retry_total=PIPELINE_RETRY_TOTAL,
                retry_backoff_factor=1.0,
                retry_backoff_max=30,
                polling_interval=DEFAULT_POLLING_INTERVAL,
                user_agent=USER_AGENT,
            )
            options.update(kwargs)
            self._clients[key] = client_class(self.credential, subscription_id, **options)
        return self._clients[key]


# --------------------------------------------------------------------------- errors

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


def retry_after_seconds(exc, now=None):
    """Seconds the server asked us to wait (Retry-After / x-ms-retry-after-ms), or None."""
    response = getattr(exc, 'response', None)
    headers = getattr(response, 'headers', None) or {}
    try:
        value = headers.get('x-ms-retry-after-ms') or headers.get('retry-after-ms')
        if value:
            return max(0.0, float(value) / 1000.0)
        value = headers.get('Retry-After') or headers.get('retry-after')
    except AttributeError:
        return None
    if not value:
        return None
    value = str(value).strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


class RetryPolicy:
    """Retry a whole operation on transient errors, honouring Retry-After, bounded by attempts and a deadline."""

    def __init__(self, attempts=3, deadline=600.0, base_delay=2.0, max_delay=60.0, sleep=time.sleep, clock=time.monotonic):
        self.attempts = max(1, int(attempts))
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.sleep = sleep
        self.clock = clock
        self.deadline = clock() + deadline
        self.retries = 0

    def delay_for(self, exc, attempt):
        """Delay before the next attempt (attempt counts from 1)."""
        delay = retry_after_seconds(exc)
        if delay is None:
            delay = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return delay

    def call(self, fn, *args, **kwargs):
        attempt = 0
        while True:
            attempt += 1
            try:
                return fn(*args, **kwargs)
            except AzureError as exc:
                if attempt >= self.attempts or not is_transient(exc):
                    raise
                delay = self.delay_for(exc, attempt)
                if self.clock() + delay > self.deadline:
                    raise
                self.retries += 1
                self.sleep(delay)


def wait_for_lro(poller, timeout, what):
    """Wait for an SDK LROPoller and return its result; raise AzureOperationTimeout after ``timeout`` s."""
    poller.wait(timeout=timeout)
    if not poller.done():
        try:
            status = poller.status()
        except Exception:  # pylint: disable=broad-except
            status = 'unknown'
        raise AzureOperationTimeout(
            'Timed out after %ss waiting for %s (last status: %s). Azure keeps working on it: re-run the task to wait '
            'for it again, or raise the timeout option.' % (timeout, what, status))
    return poller.result()


_AUTHZ_RE = re.compile(r"object id '(?P<principal>[^']+)'.*?action '(?P<action>[^']+)' over scope '(?P<scope>[^']+)'", re.S)
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
    if status == 409:
        return 'Conflict while %s (%s): %s Fix: wait for the other operation on this resource to finish, then re-run.' % (what, code, first)
    return 'Azure rejected %s (HTTP %s %s): %s' % (what, status, code or '', first)


def _first_line(text):
    text = (text or '').strip()
    return text.splitlines()[0] if text else ''


def _cap(text):
    return text[:1].upper() + text[1:] if text else text


# --------------------------------------------------------------------------- models

def to_dict(model):
    """SDK model -> REST-shaped dict (camelCase keys, read-only fields included)."""
    if model is None:
        return None
    if isinstance(model, dict) and not hasattr(model, 'as_dict'):
        return model
    if hasattr(model, 'serialize') and hasattr(model, '_attribute_map'):
        return model.serialize(keep_readonly=True)
    if hasattr(model, 'as_dict'):
        return model.as_dict()
    return dict(model)


def parse_resource_id(resource_id):
    """Split an ARM id into dict(subscription, resource_group, provider, type, name, parent_name, ...)."""
    parts = [p for p in (resource_id or '').split('/') if p]
    result = {}
    i = 0
    while i + 1 < len(parts):
        key = parts[i].lower()
        value = parts[i + 1]
        if key == 'subscriptions':
            result['subscription'] = value
        elif key == 'resourcegroups':
            result['resource_group'] = value
        elif key == 'providers':
            result['provider'] = value
            i += 2
            types = []
            names = []
            while i + 1 < len(parts):
                types.append(parts[i])
                names.append(parts[i + 1])
                i += 2
            if types:
                result['type'] = '/'.join(types)
                result['name'] = names[-1]
                result['names'] = names
            break
        i += 2
    return result


# --------------------------------------------------------------------------- module base

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

    def fail(self, msg, **kwargs):
        self.module.fail_json(msg=msg, **kwargs)

    def warn(self, msg):
        self.module.warn(msg)

    def call(self, what, fn, *args, **kwargs):
        """Run ``fn`` with the operation-level retry; on error fail with an explained message."""
        try:
            return self.retry.call(fn, *args, **kwargs)
        except (AzureError, AzureModuleError) as exc:
            return self.fail(explain_error(exc, what, self._session), **_error_facts(exc))

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

    def exit(self, **kwargs):
        self.module.exit_json(**kwargs)


def _error_facts(exc):
    if isinstance(exc, HttpResponseError):
        status, code, _m = error_parts(exc)
        return dict(status_code=status, error_code=code)
    return {}

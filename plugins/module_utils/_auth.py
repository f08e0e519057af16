# -*- coding: utf-8 -*-
# Copyright (c) hashistack.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Authentication, clouds and the session that builds clients (private API).

``AZURE_AUTH_ARGSPEC`` / ``AUTH_OPTION_NAMES``
    the auth options for a module ``argument_spec``; documented by the ``hashistack.azure.azure`` doc fragment
    (inventory plugins use the same fragment).
``auth_options_from_plugin(get_option)``
    the same options from an inventory/lookup plugin's ``get_option``.
``resolve_settings(options, env)`` / ``resolve_cloud(name_or_url)``
    module params > environment (``AZURE_*``, ``ARM_*``) > credential file > CLI/MSI; the cloud by name or by an
    https URL whose ``/metadata/endpoints`` describes it.
``AzureSession(options, env=None)``
    ``subscription_id``, ``cloud`` (dict), ``credential``, ``describe_auth()`` (human text, never secrets) and
    ``client(ComputeManagementClient or 'compute', subscription_id=None, **kwargs)``: cached clients with the
    cloud's base URL and token scope, ``ca_bundle`` and the pipeline retry options of ``_retries``.
"""

from __future__ import annotations

import configparser
import importlib
import json
import os
import shutil
import subprocess

from ansible.module_utils.basic import missing_required_lib
from ansible.module_utils.urls import open_url
from ansible_collections.hashistack.azure.plugins.module_utils._errors import AzureModuleError
from ansible_collections.hashistack.azure.plugins.module_utils._retries import PIPELINE_RETRY_OPTIONS
from ansible_collections.hashistack.azure.plugins.module_utils._sdk import (
    AZURE_REQUIREMENTS,
    HAS_AZURE,
    AzureCliCredential,
    ClientSecretCredential,
    ManagedIdentityCredential,
)

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
    keyvault=('azure.mgmt.keyvault', 'KeyVaultManagementClient'),
)
# Data-plane clients (``AzureSession.data_client``): built from a service URL, not a subscription.
DATA_CLIENT_CLASSES = dict(
    secrets=('azure.keyvault.secrets', 'SecretClient'),
)


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


def load_client_class(name, table=None):
    """Import and return the SDK client class for a short name (compute, network, resource, authorization, keyvault;
    with ``table=DATA_CLIENT_CLASSES``: secrets)."""
    table = CLIENT_CLASSES if table is None else table
    try:
        module, cls = table[name]
    except KeyError:
        raise AzureModuleError('Unknown client %r; use one of %s' % (name, ', '.join(sorted(table))))
    try:
        return getattr(importlib.import_module(module), cls)
    except ImportError as exc:
        raise AzureModuleError('%s (%s)' % (missing_required_lib(module.replace('.', '-').replace('-resources', '')), exc))


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

    def data_client(self, name, url, **kwargs):
        """A cached data-plane client (``'secrets'``: azure-keyvault-secrets' SecretClient) for the service at ``url``.

        The service names the token audience itself (Key Vault's 401 challenge), so no cloud scope is given here;
        the credential, CA bundle, user agent and retry options are the session's.
        """
        client_class = load_client_class(name, DATA_CLIENT_CLASSES)
        key = (client_class, url, tuple(sorted(kwargs.items())))
        if key not in self._clients:
            options = self._common_kwargs()
            options.update(user_agent=USER_AGENT)
            options.update(PIPELINE_RETRY_OPTIONS)
            options.update(kwargs)
            self._clients[key] = client_class(url, self.credential, **options)
        return self._clients[key]

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
                polling_interval=DEFAULT_POLLING_INTERVAL,
                user_agent=USER_AGENT,
            )
            options.update(PIPELINE_RETRY_OPTIONS)
            options.update(kwargs)
            self._clients[key] = client_class(self.credential, subscription_id, **options)
        return self._clients[key]

"""Unit tests for the Azure plumbing in plugins/module_utils: settings and clouds (_auth), retries and LRO waits
(_retries), error translation (_errors), resource ids (_ids) and SDK models (_sdk)."""

from __future__ import annotations

import email.utils
import json

import pytest
from ansible_collections.hashistack.azure.plugins.module_utils import _auth, _errors, _ids, _retries, _sdk
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
)


class FakeResponse:
    def __init__(self, status, body=None, headers=None):
        self.status_code = status
        self.headers = headers or {}
        self.reason = 'X'
        self._body = json.dumps(body) if body is not None else ''
        self.content_type = 'application/json'
        self.request = None

    def text(self, encoding=None):
        return self._body

    def body(self):
        return self._body.encode()


def http_error(status, code=None, message='failed', headers=None, cls=HttpResponseError):
    body = {'error': {'code': code, 'message': message}} if code else {'message': message}
    exc = cls(message=message, response=FakeResponse(status, body, headers))
    exc.status_code = status
    return exc


# ------------------------------------------------------------------ settings

def test_arm_env_vars_are_used_and_origin_recorded(tmp_path):
    env = {'ARM_CLIENT_ID': 'cid', 'ARM_CLIENT_SECRET': 's3', 'ARM_TENANT_ID': 'tid', 'ARM_SUBSCRIPTION_ID': 'sub',
           'AZURE_CREDENTIAL_FILE': str(tmp_path / 'none')}
    s = _auth.resolve_settings({}, env)
    assert (s['client_id'], s['secret'], s['tenant'], s['subscription_id']) == ('cid', 's3', 'tid', 'sub')
    assert s['resolved_source'] == 'service_principal'
    assert s['origin']['client_id'] == 'environment variable ARM_CLIENT_ID'


def test_azure_vars_win_over_arm_and_params_win_over_env(tmp_path):
    env = {'AZURE_CLIENT_ID': 'a', 'ARM_CLIENT_ID': 'b', 'AZURE_SECRET': 'x', 'AZURE_TENANT': 't',
           'AZURE_CREDENTIAL_FILE': str(tmp_path / 'none')}
    assert _auth.resolve_settings({}, env)['client_id'] == 'a'
    assert _auth.resolve_settings({'client_id': 'p'}, env)['client_id'] == 'p'


def test_credential_file_profile(tmp_path):
    path = tmp_path / 'credentials'
    path.write_text('[default]\nclient_id=d\nsecret=ds\ntenant=dt\nsubscription_id=dsub\n'
                    '[prod]\nclient_id=p\nsecret=ps\ntenant=pt\nsubscription_id=psub\n')
    env = {'AZURE_CREDENTIAL_FILE': str(path)}
    s = _auth.resolve_settings({'profile': 'prod'}, env)
    assert (s['client_id'], s['subscription_id'], s['resolved_source']) == ('p', 'psub', 'service_principal')
    assert 'credential file' in s['origin']['secret']
    s = _auth.resolve_settings({'auth_source': 'credential_file'}, env)
    assert s['client_id'] == 'd'


def test_credential_file_missing_profile_is_explained(tmp_path):
    path = tmp_path / 'credentials'
    path.write_text('[default]\nclient_id=d\n')
    with pytest.raises(_errors.AzureModuleError, match=r'no \[nope\] profile'):
        _auth.resolve_settings({'auth_source': 'credential_file', 'profile': 'nope'}, {'AZURE_CREDENTIAL_FILE': str(path)})


def test_env_source_without_secret_names_the_variables(tmp_path):
    with pytest.raises(_errors.AzureModuleError) as err:
        _auth.resolve_settings({'auth_source': 'env'}, {'AZURE_CLIENT_ID': 'x', 'AZURE_CREDENTIAL_FILE': str(tmp_path / 'no')})
    assert 'secret, tenant are not set' in str(err.value)
    assert 'ARM_CLIENT_SECRET' in str(err.value)


def test_auth_options_from_plugin():
    opts = {'client_id': 'c', 'tenant': 't'}

    def get_option(name):
        if name == 'ca_bundle':
            raise KeyError(name)
        return opts.get(name)
    out = _auth.auth_options_from_plugin(get_option)
    assert set(out) == set(_auth.AUTH_OPTION_NAMES)
    assert out['client_id'] == 'c' and out['ca_bundle'] is None


def test_secret_is_no_log():
    assert _auth.AZURE_AUTH_ARGSPEC['secret']['no_log'] is True


# ------------------------------------------------------------------ clouds

def test_known_clouds_and_aliases():
    assert _auth.resolve_cloud('AzureUSGovernment')['resource_manager'] == 'https://management.usgovcloudapi.net/'
    assert _auth.resolve_cloud('china')['name'] == 'AzureChinaCloud'
    assert _auth.resolve_cloud(None)['credential_scope'] == 'https://management.azure.com/.default'
    with pytest.raises(_errors.AzureModuleError, match='Unknown cloud_environment'):
        _auth.resolve_cloud('Mars')


def test_cloud_from_metadata_azure_stack_and_list_shapes():
    stack = {'authentication': {'loginEndpoint': 'https://login.local/', 'audiences': ['https://management.local/']}}
    c = _auth.cloud_from_metadata(stack, 'https://arm.local:8443')
    assert c['resource_manager'] == 'https://arm.local:8443/'
    assert c['authority'] == 'https://login.local'
    assert c['credential_scope'] == 'https://management.local/.default'
    assert c['custom'] is True
    listed = [{'name': 'X', 'resourceManager': 'https://rm/', 'authentication': {'loginEndpoint': 'https://l', 'audiences': ['https://a']}}]
    assert _auth.cloud_from_metadata(listed, 'https://rm')['name'] == 'X'
    with pytest.raises(_errors.AzureModuleError):
        _auth.cloud_from_metadata({'authentication': {}}, 'https://rm')


# ------------------------------------------------------------------ retries

def test_retry_after_seconds_forms():
    assert _retries.retry_after_seconds(http_error(429, headers={'Retry-After': '7'})) == 7.0
    assert _retries.retry_after_seconds(http_error(429, headers={'x-ms-retry-after-ms': '1500'})) == 1.5
    when = email.utils.formatdate(1000 + 30, usegmt=True)
    assert _retries.retry_after_seconds(http_error(503, headers={'Retry-After': when}), now=1000) == pytest.approx(30, abs=1)
    assert _retries.retry_after_seconds(http_error(503)) is None
    assert _retries.retry_after_seconds(http_error(503, headers={'Retry-After': 'soon'})) is None


def test_transient_classification():
    assert _errors.is_transient(http_error(429))
    assert _errors.is_transient(http_error(503))
    assert _errors.is_transient(http_error(200, code='InternalServerError'))  # LRO ended Failed with a transient code
    assert _errors.is_transient(ServiceRequestError('connection reset'))
    assert not _errors.is_transient(http_error(400, code='InvalidParameter'))
    assert not _errors.is_transient(http_error(409, code='OperationNotAllowed'))
    assert not _errors.is_transient(http_error(401, cls=ClientAuthenticationError))


class Clock:
    def __init__(self):
        self.now = 0.0
        self.sleeps = []

    def sleep(self, s):
        self.sleeps.append(s)
        self.now += s

    def __call__(self):
        return self.now


def test_retry_honours_retry_after_then_succeeds():
    clock = Clock()
    policy = _retries.RetryPolicy(attempts=3, deadline=100, sleep=clock.sleep, clock=clock)
    calls = []

    def op():
        calls.append(1)
        if len(calls) < 3:
            raise http_error(429, headers={'Retry-After': '4'})
        return 'ok'
    assert policy.call(op) == 'ok'
    assert clock.sleeps == [4.0, 4.0]
    assert policy.retries == 2


def test_retry_is_bounded_by_attempts():
    clock = Clock()
    policy = _retries.RetryPolicy(attempts=3, deadline=1000, sleep=clock.sleep, clock=clock)
    calls = []

    def op():
        calls.append(1)
        raise http_error(500)
    with pytest.raises(HttpResponseError):
        policy.call(op)
    assert len(calls) == 3
    assert clock.sleeps == [2.0, 4.0]  # exponential backoff without Retry-After


def test_retry_never_sleeps_past_deadline():
    clock = Clock()
    policy = _retries.RetryPolicy(attempts=10, deadline=10, sleep=clock.sleep, clock=clock)
    calls = []

    def op():
        calls.append(1)
        raise http_error(429, headers={'Retry-After': '6'})
    with pytest.raises(HttpResponseError):
        policy.call(op)
    assert len(calls) == 2 and clock.sleeps == [6.0]


def test_retry_does_not_retry_permanent_errors():
    clock = Clock()
    policy = _retries.RetryPolicy(sleep=clock.sleep, clock=clock)
    calls = []

    def op():
        calls.append(1)
        raise http_error(400, code='InvalidParameter')
    with pytest.raises(HttpResponseError):
        policy.call(op)
    assert len(calls) == 1 and clock.sleeps == []


# ------------------------------------------------------------------ LRO

class FakePoller:
    def __init__(self, finish):
        self.finish = finish
        self.waited = None

    def wait(self, timeout=None):
        self.waited = timeout

    def done(self):
        return self.finish

    def status(self):
        return 'InProgress'

    def result(self):
        return {'ok': True}


def test_wait_for_lro_returns_result_and_times_out_clearly():
    assert _retries.wait_for_lro(FakePoller(True), 5, 'creating x') == {'ok': True}
    with pytest.raises(_errors.AzureOperationTimeout) as err:
        _retries.wait_for_lro(FakePoller(False), 5, 'creating scale set s')
    assert 'Timed out after 5s waiting for creating scale set s (last status: InProgress)' in str(err.value)


# ------------------------------------------------------------------ errors

def test_explain_auth_failure_names_source_and_env_vars():
    msg = _errors.explain_error(ClientAuthenticationError(message='AADSTS7000215: Invalid client secret provided.'), 'reading rg')
    assert 'Authentication failed while reading rg' in msg
    assert 'AADSTS7000215' in msg and 'AZURE_CLIENT_ID' in msg and 'ARM_CLIENT_SECRET' in msg


def test_explain_403_names_principal_action_scope():
    message = ("The client 'abc' with object id '1111-2222' does not have authorization to perform action "
               "'Microsoft.Compute/virtualMachineScaleSets/write' over scope '/subscriptions/s/resourceGroups/rg/providers/"
               "Microsoft.Compute/virtualMachineScaleSets/x' or the scope is invalid.")
    msg = _errors.explain_error(http_error(403, 'AuthorizationFailed', message), 'creating scale set x')
    assert 'principal 1111-2222 lacks action Microsoft.Compute/virtualMachineScaleSets/write' in msg
    assert 'scope /subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachineScaleSets/x' in msg
    assert 'az role assignment create' in msg


def test_explain_quota_names_family_region_and_shortfall():
    message = ('Operation could not be completed as it results in exceeding approved standardDSv3Family Cores quota. '
               'Additional details - Deployment Model: Resource Manager, Location: westeurope, Current Limit: 10, '
               'Current Usage: 8, Additional Required: 6, (Minimum) New Limit Required: 14.')
    msg = _errors.explain_error(http_error(409, 'OperationNotAllowed', message), 'creating scale set servers')
    assert 'family standardDSv3Family in westeurope has limit 10 and usage 8' in msg
    assert '6 more vCPUs are needed, 4 short' in msg
    assert 'compute_quota_info' in msg


def test_parse_quota_regional_total():
    q = _errors.parse_quota_message('exceeding approved Total Regional Cores quota. Location: eastus, Current Limit: 4, '
                               'Current Usage: 4, Additional Required: 2')
    assert q['family'] == 'regional total (cores)' and q['short'] == 2


def test_explain_missing_resource_group():
    msg = _errors.explain_error(http_error(404, 'ResourceGroupNotFound', "Resource group 'rg' could not be found.", cls=ResourceNotFoundError),
                           'creating virtual network v')
    assert msg.startswith('Creating virtual network v failed') and 'create the resource group first' in msg


def test_explain_tls_problem_mentions_ca_bundle():
    msg = _errors.explain_error(ServiceRequestError('[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed'), 'reading x')
    assert 'ca_bundle' in msg


def test_explain_throttling_and_generic():
    assert 'kept throttling' in _errors.explain_error(http_error(429, 'TooManyRequests', 'slow down'), 'x')
    assert 'Azure rejected creating y (HTTP 400 InvalidParameter): bad' == _errors.explain_error(http_error(400, 'InvalidParameter', 'bad'), 'creating y')


# ------------------------------------------------------------------ ids and models

def test_parse_resource_id():
    rid = '/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v/subnets/a'
    p = _ids.parse_resource_id(rid)
    assert (p['subscription'], p['resource_group'], p['type'], p['names']) == ('s', 'rg', 'virtualNetworks/subnets', ['v', 'a'])


def test_to_dict_handles_typespec_models():
    from azure.mgmt.compute.models import Sku
    assert _sdk.to_dict(Sku(name='Standard_D2s_v3', capacity=3)) == {'name': 'Standard_D2s_v3', 'capacity': 3}
    assert _sdk.to_dict(None) is None

"""Authentication paths of the shared module_utils, exercised through a module run by ansible-playbook."""

from __future__ import annotations

from .conftest import ok

AUTH_VARS = ('AZURE_CLIENT_ID', 'AZURE_SECRET', 'AZURE_CLIENT_SECRET', 'AZURE_TENANT', 'AZURE_TENANT_ID', 'AZURE_SUBSCRIPTION_ID')
READ = {'resource_group': {'name': 'hsmod-auth-never-created', 'state': 'absent'}}


def test_arm_variables_alone_are_enough(play, arm):
    ep = arm.endpoint
    r = play(READ, drop_env=AUTH_VARS, extra_env={
        'ARM_CLIENT_ID': ep['client_id'], 'ARM_CLIENT_SECRET': ep['client_secret'],
        'ARM_TENANT_ID': ep['tenant_id'], 'ARM_SUBSCRIPTION_ID': ep['subscription_id']})
    assert not ok(r)['changed']


def test_module_defaults_action_group(play, arm):
    ep = arm.endpoint
    defaults = {'group/hashistack.azure.azure': {
        'client_id': ep['client_id'], 'secret': ep['client_secret'], 'tenant': ep['tenant_id'],
        'subscription_id': ep['subscription_id'], 'cloud_environment': ep['resource_manager'], 'ca_bundle': arm.ca_path}}
    r = play(READ, module_defaults=defaults, drop_env=AUTH_VARS + ('AZURE_CLOUD_ENVIRONMENT', 'AZURE_CA_BUNDLE'))
    assert not ok(r)['changed']


def test_credential_file_profile(play, arm, tmp_path):
    ep = arm.endpoint
    creds = tmp_path / 'credentials'
    creds.write_text(f"[default]\nclient_id=wrong\nsecret=wrong\ntenant={ep['tenant_id']}\nsubscription_id=x\n"
                     f"[sandbox]\nclient_id={ep['client_id']}\nsecret={ep['client_secret']}\ntenant={ep['tenant_id']}\n"
                     f"subscription_id={ep['subscription_id']}\n")
    r = play({'resource_group': dict(READ['resource_group'], auth_source='credential_file', profile='sandbox')},
             drop_env=AUTH_VARS, extra_env={'AZURE_CREDENTIAL_FILE': str(creds)})
    assert not ok(r)['changed']


def test_wrong_secret_is_explained_and_never_logged(play, arm):
    r = play(READ, extra_env={'AZURE_SECRET': 'not-the-secret', 'AZURE_CLIENT_SECRET': 'not-the-secret'})
    assert r['failed']
    assert 'Authentication failed while reading resource group' in r['msg']
    assert f"service principal client_id={arm.endpoint['client_id']}" in r['msg']
    assert 'environment variable AZURE_SECRET' in r['msg'] and 'ARM_CLIENT_SECRET' in r['msg']
    assert 'not-the-secret' not in r['msg'] and 'not-the-secret' not in r['_stdout']


def test_untrusted_ca_is_explained(play):
    r = play(READ, drop_env=('AZURE_CA_BUNDLE', 'REQUESTS_CA_BUNDLE', 'SSL_CERT_FILE'))
    assert r['failed'] and 'ca_bundle' in r['msg']


def test_signed_in_principal_is_the_tokens_object_id(play, arm):
    ep = arm.endpoint
    m = arm.mark()
    r = ok(play({'signed_in_principal_info': {}}, check=True))
    assert not r['changed']
    assert r['principal'] == {'object_id': ep['principal_id'], 'principal_type': 'ServicePrincipal',
                              'tenant_id': ep['tenant_id'], 'app_id': ep['client_id']}
    assert 'token' not in r and 'access_token' not in str(r)
    assert [e for e in arm.requests(m) if e['method'] != 'GET' and 'oauth2' not in e['path']] == []

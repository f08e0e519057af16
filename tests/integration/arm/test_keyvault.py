"""Key Vault in the emulator, on the wire: the management plane (Microsoft.KeyVault/vaults, soft delete,
recover, purge, name availability) against the azure-rest-api-specs examples and the documented errors, and the
secrets data plane at https://<vault>.vault.azure.net (reached through the emulator's CONNECT proxy, the way a
client behind a proxy reaches the real one): challenge, audience, RBAC data actions, versions, 404."""
from __future__ import annotations

import json
import os
import uuid

import pytest
import requests

from .armwire import Wire, compare

REF = os.path.join(os.path.dirname(__file__), "reference", "examples")
API = "2024-11-01"
LOC = "westus"
SECRETS_OFFICER = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"
SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"


def example(name):
    with open(os.path.join(REF, name), encoding="utf-8") as fh:
        return json.load(fh)


@pytest.fixture(scope="module")
def w(arm):
    return Wire(arm)


@pytest.fixture
def rg(w):
    name = f"kv-{uuid.uuid4().hex[:8]}"
    assert w.call("PUT", f"/subscriptions/{w.arm.subscription_id}/resourceGroups/{name}", {"location": LOC}).ok
    yield name
    w.call("DELETE", f"/subscriptions/{w.arm.subscription_id}/resourceGroups/{name}")


def vault_path(w, rg, name):
    return f"/subscriptions/{w.arm.subscription_id}/resourceGroups/{rg}/providers/Microsoft.KeyVault/vaults/{name}"


def make_vault(w, rg, name=None, **props):
    name = name or f"kv{uuid.uuid4().hex[:10]}"
    body = {"location": LOC, "properties": {"tenantId": w.arm.endpoint["tenant_id"],
                                            "sku": {"family": "A", "name": "standard"}, **props}}
    r = w.call("PUT", vault_path(w, rg, name), body, api_version=API)
    assert r.status_code == 201, r.text
    return name, r.json()


def grant(w, scope, role, principal=None):
    rid = f"{scope}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}"
    r = w.call("PUT", rid, {"properties": {
        "roleDefinitionId": f"/subscriptions/{w.arm.subscription_id}/providers/Microsoft.Authorization/"
                            f"roleDefinitions/{role}",
        "principalId": principal or w.arm.endpoint["principal_id"], "principalType": "ServicePrincipal"}},
        api_version="2022-04-01")
    assert r.status_code == 201, r.text


class Data:
    """Raw data-plane requests to https://<vault>.vault.azure.net via the emulator's proxy."""

    def __init__(self, arm, vault):
        self.arm = arm
        self.base = f"https://{vault}.vault.azure.net"
        self.s = requests.Session()
        self.s.trust_env = False
        self.s.proxies = {"https": arm.endpoint["vault_proxy"]}
        self.s.verify = arm.ca_path

    def token(self, scope="https://vault.azure.net/.default"):
        return self.arm.credential().get_token(scope).token

    def call(self, method, path, body=None, token=True, api_version="7.5"):
        headers = {}
        if token:
            headers["Authorization"] = "Bearer " + (token if isinstance(token, str) else self.token())
        return self.s.request(method, self.base + path, json=body, params={"api-version": api_version},
                              headers=headers, timeout=30)


def test_vault_get_matches_spec_example(w, rg):
    name, created = make_vault(w, rg, enableRbacAuthorization=True)
    ref = example("getVault.json")["responses"]["200"]["body"]
    got = w.call("GET", vault_path(w, rg, name), api_version=API)
    assert got.status_code == 200
    body = got.json()
    # accessPolicies (empty for an RBAC vault) and hsmPoolResourceId (not set for standard vaults) are the
    # example's content, not required keys
    problems = [p for p in compare(ref, body) if "accessPolicies" not in p and "hsmPoolResourceId" not in p]
    assert not problems, problems
    props = body["properties"]
    assert props["vaultUri"] == f"https://{name}.vault.azure.net/"
    assert props["enableRbacAuthorization"] is True and props["enableSoftDelete"] is True
    assert props["softDeleteRetentionInDays"] == 90 and props["tenantId"] == w.arm.endpoint["tenant_id"]


def test_vault_put_again_lists_and_global_names(w, rg, arm):
    name, _ = make_vault(w, rg)
    body = {"location": LOC, "tags": {"a": "b"}, "properties": {
        "tenantId": arm.endpoint["tenant_id"], "sku": {"family": "A", "name": "standard"}}}
    r = w.call("PUT", vault_path(w, rg, name), body, api_version=API)
    assert r.status_code == 200 and r.json()["tags"] == {"a": "b"}
    ids = [v["id"] for v in w.call("GET", vault_path(w, rg, "")[:-1], api_version=API).json()["value"]]
    assert ids == [vault_path(w, rg, name)]
    sub_ids = [v["id"] for v in w.call("GET", f"/subscriptions/{arm.subscription_id}/providers/Microsoft.KeyVault/"
                                               "vaults", api_version=API).json()["value"]]
    assert vault_path(w, rg, name) in sub_ids
    other = f"kv-{uuid.uuid4().hex[:8]}"
    w.call("PUT", f"/subscriptions/{arm.subscription_id}/resourceGroups/{other}", {"location": LOC})
    try:
        r = w.call("PUT", vault_path(w, other, name), body, api_version=API)
        assert r.status_code == 409 and r.json()["error"]["code"] == "VaultAlreadyExists"
    finally:
        w.call("DELETE", f"/subscriptions/{arm.subscription_id}/resourceGroups/{other}")
    r = w.call("PUT", vault_path(w, rg, "1bad--name"), body, api_version=API)
    assert r.status_code == 400 and r.json()["error"]["code"] == "VaultNameNotValid"
    r = w.call("PUT", vault_path(w, rg, name), {**body, "properties": {**body["properties"],
                                                                       "softDeleteRetentionInDays": 30}},
               api_version=API)
    assert r.status_code == 400 and "softDeleteRetentionInDays" in r.json()["error"]["message"]


def test_soft_delete_recover_and_purge(w, rg, arm):
    name, created = make_vault(w, rg, enableRbacAuthorization=True, softDeleteRetentionInDays=7)
    grant(w, created["id"], SECRETS_OFFICER)
    data = Data(arm, name)
    assert data.call("PUT", "/secrets/kept", {"value": "v1"}).status_code == 200
    check = lambda: w.call("POST", f"/subscriptions/{arm.subscription_id}/providers/Microsoft.KeyVault/"  # noqa: E731
                                   "checkNameAvailability", {"name": name, "type": "Microsoft.KeyVault/vaults"},
                           api_version=API).json()
    assert check()["nameAvailable"] is False
    assert w.call("DELETE", vault_path(w, rg, name), api_version=API).status_code == 200
    assert w.call("GET", vault_path(w, rg, name), api_version=API).status_code == 404
    deleted_path = f"/subscriptions/{arm.subscription_id}/providers/Microsoft.KeyVault/locations/{LOC}/deletedVaults/{name}"
    d = w.call("GET", deleted_path, api_version=API)
    assert d.status_code == 200 and d.json()["properties"]["vaultId"] == created["id"]
    listed = w.call("GET", f"/subscriptions/{arm.subscription_id}/providers/Microsoft.KeyVault/deletedVaults",
                    api_version=API).json()["value"]
    assert name in [v["name"] for v in listed]
    # the name stays taken: a plain create is refused, createMode=recover brings the vault and its secrets back
    body = {"location": LOC, "properties": {"tenantId": arm.endpoint["tenant_id"],
                                            "sku": {"family": "A", "name": "standard"}}}
    r = w.call("PUT", vault_path(w, rg, name), body, api_version=API)
    assert r.status_code == 409 and r.json()["error"]["code"] == "ConflictError"
    body["properties"]["createMode"] = "recover"
    r = w.call("PUT", vault_path(w, rg, name), body, api_version=API)
    assert r.status_code == 200 and r.json()["properties"]["softDeleteRetentionInDays"] == 7
    assert data.call("GET", "/secrets/kept").json()["value"] == "v1"
    # purge: 202 + Location, then the name is free
    assert w.call("DELETE", vault_path(w, rg, name), api_version=API).status_code == 200
    r = w.call("POST", deleted_path + "/purge", api_version=API)
    assert r.status_code == 202 and r.headers["Location"]
    assert w.get(r.headers["Location"]).status_code in (200, 202)
    assert w.call("GET", deleted_path, api_version=API).status_code == 404
    assert check()["nameAvailable"] is True


def test_data_plane_challenge_audience_and_rbac(w, rg, arm):
    name, created = make_vault(w, rg, enableRbacAuthorization=True)
    data = Data(arm, name)
    # no token: 401 with the challenge the SDKs follow
    r = data.call("GET", "/secrets/x", token=False)
    assert r.status_code == 401 and r.json()["error"]["code"] == "Unauthorized"
    challenge = r.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer authorization=\"") and 'resource="https://vault.azure.net"' in challenge
    assert arm.endpoint["tenant_id"] in challenge
    # an ARM token is for another audience
    r = data.call("GET", "/secrets/x", token=w.token())
    assert r.status_code == 401 and "AKV10022" in r.json()["error"]["message"]
    # Owner of the subscription holds no data action: 403 ForbiddenByRbac naming the action
    r = data.call("PUT", "/secrets/x", {"value": "v"})
    err = r.json()["error"]
    assert r.status_code == 403 and err["innererror"]["code"] == "ForbiddenByRbac"
    assert "Microsoft.KeyVault/vaults/secrets/setSecret/action" in err["message"]
    # Secrets User on the vault: read, not write
    grant(w, created["id"], SECRETS_USER)
    r = data.call("GET", "/secrets/x")
    assert r.status_code == 404 and r.json()["error"]["code"] == "SecretNotFound"
    assert data.call("PUT", "/secrets/x", {"value": "v"}).status_code == 403
    r = data.call("GET", "/secrets/x", api_version="6.9")
    assert r.status_code == 400 and r.json()["error"]["code"] == "BadParameter"


def test_data_plane_secrets_versions_and_delete(w, rg, arm):
    name, created = make_vault(w, rg, enableRbacAuthorization=True)
    grant(w, created["id"], SECRETS_OFFICER)
    data = Data(arm, name)
    ref = example("SetSecret-example.json")
    r = data.call("PUT", "/secrets/crpsecret", ref["parameters"]["parameters"])
    assert r.status_code == 200
    assert not compare(ref["responses"]["200"]["body"], r.json())
    first = r.json()["id"]
    assert first.startswith(f"https://{name}.vault.azure.net/secrets/crpsecret/")
    second = data.call("PUT", "/secrets/crpsecret", {"value": "two", "contentType": "text/plain"}).json()
    assert second["contentType"] == "text/plain"
    assert data.call("GET", "/secrets/crpsecret").json()["value"] == "two"
    assert data.call("GET", "/secrets/crpsecret/" + first.rsplit("/", 1)[1]).json()["value"] == "mysecretvalue"
    versions = data.call("GET", "/secrets/crpsecret/versions").json()["value"]
    assert sorted(v["id"] for v in versions) == sorted([first, second["id"]]) and all("value" not in v for v in versions)
    listed = data.call("GET", "/secrets").json()["value"]
    assert [s["id"] for s in listed] == [f"https://{name}.vault.azure.net/secrets/crpsecret"]
    d = data.call("DELETE", "/secrets/crpsecret").json()
    assert d["recoveryId"].endswith("/deletedsecrets/crpsecret") and "value" not in d
    assert data.call("GET", "/secrets/crpsecret").status_code == 404
    r = data.call("PUT", "/secrets/crpsecret", {"value": "again"})
    assert r.status_code == 409
    assert data.call("DELETE", "/deletedsecrets/crpsecret").status_code == 204
    assert data.call("PUT", "/secrets/crpsecret", {"value": "again"}).status_code == 200


def test_managed_identity_token_for_key_vault(arm):
    # the audience IMDS hands out for resource=https://vault.azure.net (sandbox hosts read secrets with it)
    from sandbox.arm.auth import Auth
    auth = Auth.load(arm.state_dir, arm.endpoint["authority"], arm.resource_manager)
    tok = auth.managed_identity_token("p", "c", "/x", "https://vault.azure.net")
    assert auth.decode(tok["access_token"])["aud"] == "https://vault.azure.net" and tok["resource"] == "https://vault.azure.net"
    with pytest.raises(ValueError):
        auth.managed_identity_token("p", "c", "/x", "https://storage.azure.com")


def test_backend_learns_the_vault_host_names(tmp_path):
    """Sandbox hosts resolve <vault>.vault.azure.net to the emulator: the backend is told every name that exists,
    on create, delete and recover, and again after a restart."""
    from sandbox.arm.testing import ArmEmulator
    log = tmp_path / "calls.jsonl"
    emu = ArmEmulator(extra_args=["--backend", "tests.integration.arm.recording_backend:RecordingBackend",
                                  "--hosts-opt", f"log={log}"]).start()

    def announced():
        calls = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
        return [c["payload"] for c in calls if c["event"] == "vault_hosts"]
    try:
        w = Wire(emu)
        rg_name = "kvhosts"
        w.call("PUT", f"/subscriptions/{emu.subscription_id}/resourceGroups/{rg_name}", {"location": LOC})
        assert announced() == []  # at start: no vault, nothing to tell
        name, _ = make_vault(w, rg_name)
        assert announced()[-1] == [f"{name}.vault.azure.net"]
        assert w.call("DELETE", vault_path(w, rg_name, name), api_version=API).status_code == 200
        assert announced()[-1] == []
        body = {"location": LOC, "properties": {"tenantId": emu.endpoint["tenant_id"], "createMode": "recover",
                                                "sku": {"family": "A", "name": "standard"}}}
        assert w.call("PUT", vault_path(w, rg_name, name), body, api_version=API).status_code == 200
        assert announced()[-1] == [f"{name}.vault.azure.net"]
        emu.restart()
        assert announced()[-1] == [f"{name}.vault.azure.net"] and len(announced()) == 4
    finally:
        emu.cleanup()

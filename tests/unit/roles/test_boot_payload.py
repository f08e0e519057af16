"""The boot payload (roles/boot_payload) on the controller, and its boot script's steps without a machine.

One source of truth: the config files, secrets templates, units and service files the payload carries
(decoded as cloud-init decodes custom data) are byte-identical to what the roles render for the pool
(consul/nomad render_pool, whose bytes molecule compares with the instances'); the gossip keys the
roles use are nowhere in the custom data, and the boot script fills the secrets file to exactly what
the role writes."""

from __future__ import annotations

import base64
import gzip
import hashlib
import http.server
import importlib.util
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import jinja2
import pytest
import yaml
from ansible.plugins.filter.core import FilterModule as AnsibleCoreFilters

sys.path.insert(0, str(Path(__file__).resolve().parent))
from localplay import ROOT, _failure, _play, _result  # noqa: E402

SCRIPT = ROOT / "roles" / "boot_payload" / "files" / "hashistack_boot.py"
SPEC = {"cluster": "prod", "azure": {"location": "westeurope", "subscription_id": "0b1f6471-1bf0-4dda-aec3-cb9272f09590"},
        "consul_version": "1.20.1", "nomad_version": "1.9.3", "pools": [{"name": "web", "count": 2}]}

PAYLOAD = """\
- name: Payload
  ansible.builtin.include_role:
    name: hashistack.azure.boot_payload
  vars:
    boot_payload_pool: "{{ pool }}"
- name: What the roles render for the pool, on their own
  ansible.builtin.include_role:
    name: hashistack.azure.consul
    tasks_from: render_pool
  vars:
    consul_render_pool: "{{ pool }}"
- name: Nomad's
  ansible.builtin.include_role:
    name: hashistack.azure.nomad
    tasks_from: render_pool
  vars:
    nomad_render_pool: "{{ pool }}"
- name: Show
  ansible.builtin.copy:
    content: "{{ {'user_data': boot_payload_user_data, 'consul': consul_pool_config, 'nomad': nomad_pool_config,
                  'consul_unit': consul_pool_boot.unit, 'nomad_unit': nomad_pool_boot.unit} | to_json }}"
    dest: result.json
    mode: "0600"
"""


def _boot_module():
    spec = importlib.util.spec_from_file_location("hashistack_boot", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _written(user_data: str) -> dict:
    """The files cloud-init writes from the custom data (write_files, encodings as cloud-init decodes them)."""
    assert user_data.startswith("#cloud-config\n")
    doc = yaml.safe_load(user_data)
    out = {}
    for f in doc["write_files"]:
        c = f["content"]
        out[f["path"]] = gzip.decompress(base64.b64decode(c)).decode() if f.get("encoding") == "gz+b64" else c
    assert doc["runcmd"] == [["python3", "/usr/local/libexec/hashistack/boot", "--payload", "/etc/hashistack/boot-payload.json"]]
    return out


def _role_secrets_file(product: str, key: str) -> str:
    """What the role writes as secrets.hcl (its template with Ansible's filters, rendered with the key and the
    role's defaults: gossip encryption on, ACLs off)."""
    text = (ROOT / "roles" / product / "templates" / f"{product}-secrets.hcl.j2").read_text()
    env = jinja2.Environment(keep_trailing_newline=True, trim_blocks=True)  # as ansible.builtin.template
    env.filters.update(AnsibleCoreFilters().filters())
    return env.from_string(text).render({f"_{product}_gossip_key": key, f"{product}_gossip_encryption": True,
                                         f"{product}_acl_enabled": False})


@pytest.mark.slow
@pytest.mark.parametrize("pool", ["servers", "web"])
def test_payload_carries_the_roles_bytes_and_no_secret(tmp_path, pool):
    secrets = tmp_path / "secrets"
    r = _result(_play(tmp_path, PAYLOAD, {"hashistack_spec": SPEC, "hashistack_secrets_dir": str(secrets), "pool": pool}))
    files = _written(r["user_data"])
    assert json.loads(files["/etc/hashistack/instance.json"]) == {"cluster": "prod", "pool": pool}
    assert files["/usr/local/libexec/hashistack/boot"] == SCRIPT.read_text()
    payload = json.loads(files["/etc/hashistack/boot-payload.json"])
    consul, nomad = payload["products"]
    assert consul["files"] == {"consul.hcl": r["consul"]} and nomad["files"] == {"nomad.hcl": r["nomad"]}
    assert (consul["unit"], nomad["unit"]) == (r["consul_unit"], r["nomad_unit"])
    assert "ExecStart=/usr/local/bin/consul agent -config-dir=/etc/consul.d/" in consul["unit"]
    assert payload["vault"]["url"].startswith("https://hs-prod-") and payload["vault"]["url"].endswith(".vault.azure.net")

    # the gossip keys the roles use (generated into the controller's secrets dir) never reach the custom data
    keys = {p: (secrets / f"{p}-gossip.key").read_text().strip() for p in ("consul", "nomad")
            if p == "consul" or pool == "servers"}  # only servers carry Nomad's key
    for key in keys.values():
        assert len(key) == 44 and key not in r["user_data"] and key not in json.dumps(payload)
        assert key not in r["consul"] + r["nomad"]
    # ... they are filled in at boot into exactly the file the role writes
    boot = _boot_module()
    vault_value = {"consul-gossip-key": keys["consul"], "nomad-gossip-key": keys.get("nomad")}
    assert boot.fill(consul["secret_files"]["secrets.hcl"], vault_value) == _role_secrets_file("consul", keys["consul"])
    if pool == "servers":
        assert boot.fill(nomad["secret_files"]["secrets.hcl"], vault_value) == _role_secrets_file("nomad", keys["nomad"])
        assert (nomad["user"], nomad["data_dir_mode"]) == ("nomad", "0750")
    else:
        assert nomad["secret_files"] == {} and (nomad["user"], nomad["data_dir_mode"]) == ("root", "0711")
        assert 'datacenter = "westeurope"' in nomad["files"]["nomad.hcl"]

    # the release: same names and key as hashicorp_release, the key carried once
    rel = consul["release"]
    assert rel["url"] == "https://releases.hashicorp.com/consul/1.20.1" and rel["zip"] == "consul_1.20.1_linux_amd64.zip"
    assert rel["gpg_fingerprint"] == "C874011F0AB405110D02105534365D9472D7468F"
    assert list(payload["keys"]) == [rel["gpg_key"]] == [nomad["release"]["gpg_key"]]
    assert payload["keys"][rel["gpg_key"]].strip() == (ROOT / "roles/hashicorp_release/files/hashicorp.asc").read_text().strip()
    # the Scheduled Events service: the role's own files
    (svc,) = payload["services"]
    src = ROOT / "roles" / "scheduled_events" / "files"
    assert svc["files"]["/usr/local/libexec/hashistack/scheduled-events"]["content"] == (src / "hashistack_scheduled_events.py").read_text()
    assert svc["files"]["/etc/systemd/system/hashistack-scheduled-events.service"]["content"] == (
        src / "hashistack-scheduled-events.service").read_text()
    assert json.loads(svc["files"]["/etc/hashistack/scheduled-events.json"]["content"])["nomad_addr"] == "http://127.0.0.1:4646"
    assert len(base64.b64encode(r["user_data"].encode())) <= 65535


@pytest.mark.slow
def test_release_site_of_the_boot_and_the_same_bytes_every_render(tmp_path):
    """The instances' release site can differ from the controller's (hashicorp_release_base_url, even as an extra
    var, which outranks everything else); by default it is the controller's. Two renders are byte-identical (a
    scale set's model changes only when the pool's state does)."""
    extra = {"hashistack_spec": SPEC, "hashistack_secrets_dir": str(tmp_path / "secrets"), "pool": "web",
             "hashicorp_release_base_url": "http://127.0.0.1:8080/"}
    default = _result(_play(tmp_path, PAYLOAD, extra))
    again = _result(_play(tmp_path, PAYLOAD, extra))
    assert default["user_data"] == again["user_data"]
    urls = lambda r: [p["release"]["url"] for p in json.loads(_written(r["user_data"])["/etc/hashistack/boot-payload.json"])["products"]]  # noqa: E731
    assert urls(default) == ["http://127.0.0.1:8080/consul/1.20.1", "http://127.0.0.1:8080/nomad/1.9.3"]
    mirror = _result(_play(tmp_path, PAYLOAD, dict(extra, boot_payload_release_base_url="http://mirror.internal:9000/hc/")))
    assert urls(mirror) == ["http://mirror.internal:9000/hc/consul/1.20.1", "http://mirror.internal:9000/hc/nomad/1.9.3"]
    # only the release site differs
    a = json.loads(_written(default["user_data"])["/etc/hashistack/boot-payload.json"])
    b = json.loads(_written(mirror["user_data"])["/etc/hashistack/boot-payload.json"])
    for p in a["products"] + b["products"]:
        p["release"].pop("url")
    assert a == b


@pytest.mark.slow
def test_payload_refuses_an_unknown_pool(tmp_path):
    msg = _failure(_play(tmp_path, PAYLOAD, {"hashistack_spec": SPEC, "hashistack_secrets_dir": str(tmp_path / "s"),
                                             "pool": "gpu"}))
    assert "'gpu' is not a pool of hashistack_spec" in msg


# ------------------------------------------------------------------ the boot script's steps

@pytest.fixture(scope="module")
def release_tree(tmp_path_factory):
    out = tmp_path_factory.mktemp("releases")
    subprocess.run([sys.executable, "-m", "sandbox.agents", "build", "--consul", "1.20.1", "--out", str(out)],
                   cwd=ROOT, check=True, capture_output=True)
    return out


def _release(tmp_path, tree, fingerprint=""):
    key = (tree / "sandbox-release-key.asc").read_text()
    rel = {"product": "consul", "version": "1.20.1", "url": (tree / "consul" / "1.20.1").as_uri(),
           "zip": "consul_1.20.1_linux_amd64.zip", "sums": "consul_1.20.1_SHA256SUMS",
           "dir": str(tmp_path / "opt" / "consul" / "1.20.1"), "binary": str(tmp_path / "opt" / "consul" / "1.20.1" / "consul"),
           "link": str(tmp_path / "bin" / "consul"), "gpg_key": "k", "gpg_fingerprint": fingerprint, "timeout": 10}
    return rel, {"k": key}


def test_release_verified_installed_linked_then_skipped(tmp_path, release_tree):
    boot = _boot_module()
    rel, keys = _release(tmp_path, release_tree)
    msg = boot.install_release(rel, keys)
    assert "installed from" in msg and "verified" in msg
    assert Path(rel["link"]).resolve() == Path(rel["binary"]) and Path(rel["binary"]).stat().st_mode & 0o777 == 0o755
    with zipfile_open(release_tree) as z:
        assert Path(rel["binary"]).read_bytes() == z.read("consul")
    # the image (or a previous run) has it: nothing downloaded
    rel["url"] = "http://127.0.0.1:9/unreachable"
    assert "already installed" in boot.install_release(rel, keys)


def zipfile_open(tree):
    import zipfile
    return zipfile.ZipFile(tree / "consul" / "1.20.1" / "consul_1.20.1_linux_amd64.zip")


def test_release_tampered_archive_refused(tmp_path, release_tree):
    boot = _boot_module()
    mirror = tmp_path / "mirror"
    shutil.copytree(release_tree / "consul" / "1.20.1", mirror)
    with open(mirror / "consul_1.20.1_linux_amd64.zip", "ab") as f:
        f.write(b"tampered")
    rel, keys = _release(tmp_path, release_tree)
    rel["url"] = mirror.as_uri()
    with pytest.raises(boot.StepError, match="corrupt or tampered with; it was not installed"):
        boot.install_release(rel, keys)
    assert not Path(rel["binary"]).exists()


def test_release_signed_by_another_key_refused(tmp_path, release_tree):
    boot = _boot_module()
    rel, _ = _release(tmp_path, release_tree)
    keys = {"k": (ROOT / "roles/hashicorp_release/files/hashicorp.asc").read_text()}  # HashiCorp's key did not sign it
    with pytest.raises(boot.StepError, match="has no valid signature"):
        boot.install_release(rel, keys)
    rel, keys = _release(tmp_path, release_tree, fingerprint="C874011F0AB405110D02105534365D9472D7468F")
    with pytest.raises(boot.StepError, match="no valid signature by C874011F"):
        boot.install_release(rel, keys)


class _FakeAzure(http.server.BaseHTTPRequestHandler):
    """IMDS token endpoint and Key Vault GET secret, as documented (401/403/404 bodies abridged)."""
    secrets: dict = {}
    allowed = True

    def do_GET(self):  # noqa: N802
        if self.path.startswith("/metadata/identity/oauth2/token"):
            assert self.headers["Metadata"] == "true" and "resource=https%3A%2F%2Fvault.azure.net" in self.path
            return self._send(200, {"access_token": "tok", "token_type": "Bearer"})
        assert self.path.split("?")[1] == "api-version=7.4"
        if self.headers.get("Authorization") != "Bearer tok":
            return self._send(401, {"error": {"code": "Unauthorized"}})
        if not self.allowed:
            return self._send(403, {"error": {"code": "Forbidden", "innererror": {"code": "ForbiddenByRbac"}}})
        name = self.path.split("?")[0].rsplit("/", 1)[1]
        if name not in self.secrets:
            return self._send(404, {"error": {"code": "SecretNotFound"}})
        return self._send(200, {"value": self.secrets[name], "id": "https://v.vault.azure.net/secrets/" + name + "/1"})

    def _send(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *a):
        pass


@pytest.fixture
def fake_azure():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeAzure)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    _FakeAzure.secrets, _FakeAzure.allowed = {}, True
    yield f"127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def test_secrets_read_with_an_imds_token(fake_azure):
    boot = _boot_module()
    key = base64.b64encode(hashlib.sha256(b"k").digest()).decode()
    _FakeAzure.secrets = {"consul-gossip-key": key}
    vault = {"name": "v", "url": "http://" + fake_azure, "resource": "https://vault.azure.net", "api_version": "7.4"}
    out = {}
    assert boot.read_secrets(vault, ["consul-gossip-key"], out, imds=fake_azure) == "read consul-gossip-key from vault v (attempt 1)"
    assert out == {"consul-gossip-key": key}
    with pytest.raises(boot.StepError, match="HTTP 404.*store the secret"):
        boot.read_secrets(vault, ["nomad-gossip-key"], {}, imds=fake_azure)
    _FakeAzure.allowed = False
    with pytest.raises(boot.StepError, match="HTTP 403.*ForbiddenByRbac.*Key Vault Secrets User' on vault v"):
        boot.read_secrets(vault, ["consul-gossip-key"], {}, imds=fake_azure)
    # a role assignment that reaches the vault while the instance waits
    threading.Timer(1.0, lambda: setattr(_FakeAzure, "allowed", True)).start()
    msg = boot.read_secrets(vault, ["consul-gossip-key"], out, imds=fake_azure, wait=30)
    assert msg.startswith("read consul-gossip-key from vault v (attempt ") and not msg.endswith("(attempt 1)")
    _FakeAzure.allowed, _FakeAzure.secrets = True, {"consul-gossip-key": 'x" \n server = false'}
    with pytest.raises(boot.StepError, match="is not a key"):
        boot.read_secrets(vault, ["consul-gossip-key"], {}, imds=fake_azure)


def test_a_failed_step_is_named_in_boot_json_and_the_agents_are_stopped(tmp_path, release_tree, monkeypatch):
    boot = _boot_module()
    calls = []
    monkeypatch.setattr(boot, "systemctl", lambda *a: calls.append(a) or subprocess.CompletedProcess(a, 0, "", ""))
    rel, keys = _release(tmp_path, release_tree)
    rel["url"] = "http://127.0.0.1:9/unreachable"
    status = tmp_path / "boot.json"
    payload = {"cluster": "prod", "pool": "web", "status_file": str(status), "keys": keys, "vault": {},
               "products": [{"product": "consul", "release": rel, "secret_files": {}}],
               "services": [{"unit": "hashistack-scheduled-events.service", "enabled": True, "files": {}}]}
    (tmp_path / "payload.json").write_text(json.dumps(payload))
    assert boot.main(["--payload", str(tmp_path / "payload.json")]) == 1
    doc = json.loads(status.read_text())
    assert doc["state"] == "failed" and doc["failed_step"] == "release:consul"
    (step,) = doc["steps"]
    assert step["step"] == "release:consul" and step["ok"] is False and step["finished"]
    assert "cannot download http://127.0.0.1:9/unreachable/consul_1.20.1_SHA256SUMS" in step["message"]
    assert "hashicorp_release_base_url" in step["message"]
    # never half-configured and running; nothing was enabled or started
    assert calls == [("stop", "consul.service"), ("stop", "hashistack-scheduled-events.service")]

"""TLS (and ACLs) on 1 server + 1 client: what an operator and an attacker on the network see."""

import datetime as dt
import json
import os
import socket
import ssl
from pathlib import Path

import pytest

SECRETS = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/nonexistent")) / "secrets" / "tls"
CA = {"consul": "/etc/consul.d/tls/ca.pem", "nomad": "/etc/nomad.d/tls/ca.pem"}
PORT = {"consul": 8501, "nomad": 4646}


def _name(host):
    return host.backend.get_hostname()


def _https(host, product, path):
    """GET over HTTPS with the cluster CA and the management token kept on the controller."""
    token = (SECRETS.parent / f"{product}-management.token").read_text().strip()
    out = host.check_output(f"curl -sf -H 'Authorization: Bearer {token}' --cacert {CA[product]} "
                            f"https://127.0.0.1:{PORT[product]}{path}")
    return json.loads(out)


def test_apis_answer_over_https_with_the_cluster_ca(host):
    assert _https(host, "consul", "/v1/status/leader")
    assert _https(host, "nomad", "/v1/status/leader")
    me = _https(host, "consul", "/v1/agent/self")["Config"]
    assert me["Datacenter"] == "dc1" and me["Server"] is (_name(host) == "server-1")


def test_plain_http_refused(host):
    # Consul: ports.http = -1, nothing listens; Nomad: its API port speaks TLS only
    assert host.run("curl -s -o /dev/null http://127.0.0.1:8500/v1/status/leader").rc == 7  # connection refused
    r = host.run("curl -s -w ' %{http_code}' http://127.0.0.1:4646/v1/status/leader")
    assert r.stdout.endswith(" 400") and "HTTPS" in r.stdout, r.stdout
    # and an HTTPS client that does not trust the cluster CA is refused by curl itself
    assert host.run("curl -s -o /dev/null https://127.0.0.1:8501/v1/status/leader").rc == 60


def test_cluster_formed_over_verified_rpc(host):
    members = _https(host, "consul", "/v1/agent/members")
    assert sorted(m["Name"] for m in members if m["Status"] == 1) == ["client-1", "server-1"]
    if _name(host) == "server-1":
        nodes = _https(host, "nomad", "/v1/nodes")
        assert [(n["Name"], n["Status"]) for n in nodes] == [("client-1", "ready")]


def test_key_material_owners_and_modes(host):
    server = _name(host) == "server-1"
    files = {"/etc/consul.d/tls/ca.pem": ("consul", 0o644),
             "/etc/consul.d/tls/consul.pem": ("consul", 0o644),
             "/etc/consul.d/tls/consul-key.pem": ("consul", 0o640),
             "/etc/nomad.d/tls/ca.pem": ("nomad" if server else "root", 0o644),
             "/etc/nomad.d/tls/nomad.pem": ("nomad" if server else "root", 0o644),
             "/etc/nomad.d/tls/nomad-key.pem": ("nomad" if server else "root", 0o640)}
    for path, (group, mode) in files.items():
        f = host.file(path)
        assert f.user == "root" and f.group == group and f.mode == mode, path
    # the main config files reference the material by path and carry none
    for cfg in ("/etc/consul.d/consul.hcl", "/etc/nomad.d/nomad.hcl"):
        assert "PRIVATE KEY" not in host.file(cfg).content_string
    assert "ports {\n  http  = -1" in host.file("/etc/consul.d/consul.hcl").content_string


def test_certificates_name_what_the_products_verify(host):
    x509 = pytest.importorskip("cryptography.x509")
    server = _name(host) == "server-1"
    for product, cn in (("consul", "server.dc1.consul" if server else "client.dc1.consul"),
                        ("nomad", "server.global.nomad" if server else "client.global.nomad")):
        pem = host.file(f"/etc/{product}.d/tls/{product}.pem").content_string.encode()
        cert = x509.load_pem_x509_certificate(pem)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert set(san.get_values_for_type(x509.DNSName)) == {cn, "localhost"}
        assert [str(i) for i in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
        assert cert.not_valid_after_utc - dt.datetime.now(dt.UTC) > dt.timedelta(days=300)


def test_controller_keeps_the_ca_private(host):
    if _name(host) != "server-1":
        return
    assert (SECRETS.stat().st_mode & 0o777) == 0o700
    for key in ("ca-key.pem", "consul-server-key.pem", "nomad-server-key.pem", "nomad-client-web-key.pem"):
        assert (SECRETS / key).stat().st_mode & 0o777 == 0o600, key


def _foreign_pair(tmp: Path):
    """A CA nobody in the cluster knows, and a client certificate from it named like a real server."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "evil CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "server.global.nomad")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(2).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("server.global.nomad"), x509.DNSName("server.dc1.consul")]),
                           critical=False).sign(ca_key, hashes.SHA256()))
    (tmp / "evil.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp / "evil-key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    (tmp / "evil-ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return tmp / "evil.pem", tmp / "evil-key.pem"


def _handshake(addr, port, cert, key):
    """A TLS handshake + one read, as another agent opens its RPC connection."""
    ctx = ssl.create_default_context(cafile=str(SECRETS / "ca.pem"))
    ctx.check_hostname = False
    ctx.load_cert_chain(str(cert), str(key))
    with socket.create_connection((addr, port), timeout=5) as raw:
        with ctx.wrap_socket(raw) as s:
            s.settimeout(2)
            try:
                s.recv(1)  # TLS 1.3: the server's verdict on our certificate arrives after the handshake
            except TimeoutError:
                pass


@pytest.mark.parametrize("port", [8300, 4647])
def test_rpc_refuses_a_certificate_from_another_ca(host, tmp_path, port):
    if _name(host) != "server-1":
        return
    addr = host.backend.get_variables()["ansible_host"]
    cert, key = _foreign_pair(tmp_path)
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
        _handshake(addr, port, cert, key)
    # the same connection with the cluster's own server certificate is accepted
    product = "consul" if port == 8300 else "nomad"
    _handshake(addr, port, SECRETS / f"{product}-server.pem", SECRETS / f"{product}-server-key.pem")


def _token(name):
    return (SECRETS.parent / f"{name}.token").read_text().strip()


def _status(host, product, path, token=None, method="GET"):
    auth = f"-H 'Authorization: Bearer {token}' " if token else ""
    return host.check_output(f"curl -s -o /dev/null -w '%{{http_code}}' -X {method} {auth}--cacert {CA[product]} "
                             f"https://127.0.0.1:{PORT[product]}{path}")


def test_anonymous_denied(host):
    assert _status(host, "consul", "/v1/kv/app/x") == "403"
    assert _status(host, "consul", "/v1/kv/app/x", method="PUT") == "403"
    assert _status(host, "nomad", "/v1/jobs") == "403"
    # a token nobody issued is refused as well
    assert _status(host, "nomad", "/v1/jobs", token="00000000-1111-2222-3333-444444444444") == "403"


def test_management_tokens_kept_on_the_controller_work(host):
    for product, path in (("consul", "/v1/kv/app/x"), ("nomad", "/v1/jobs")):
        f = SECRETS.parent / f"{product}-management.token"
        assert f.stat().st_mode & 0o777 == 0o600
        assert _status(host, product, path, token=f.read_text().strip()) in ("200", "404"), product


def test_agents_use_their_own_pool_token(host):
    pool = "servers" if _name(host) == "server-1" else "web"
    secrets = host.file("/etc/consul.d/secrets.hcl")
    assert secrets.mode == 0o640 and secrets.group == "consul"
    mine = _token(f"consul-agent-{pool}")
    assert f'agent = "{mine}"' in secrets.content_string
    assert ("initial_management" in secrets.content_string) is (pool == "servers")
    out = host.check_output(f"curl -sf -H 'Authorization: Bearer {mine}' --cacert {CA['consul']} "
                            "https://127.0.0.1:8501/v1/acl/token/self")
    assert [p["Name"] for p in json.loads(out)["Policies"]] == ["hashistack-agent"]
    # ... which may not read KV (minimal policy)
    assert _status(host, "consul", "/v1/kv/app/x", token=mine) == "403"
    # the agent registered its node with it (anti-entropy under default deny)
    mgmt = _token("consul-management")
    nodes = json.loads(host.check_output(f"curl -sf -H 'Authorization: Bearer {mgmt}' --cacert {CA['consul']} "
                                         "https://127.0.0.1:8501/v1/catalog/nodes"))
    assert _name(host) in [n["Node"] for n in nodes]


def test_bootstrapped_once_with_the_controllers_token(host):
    if _name(host) != "server-1":
        return
    # Nomad: a second bootstrap is refused (the role's re-run recognises this answer), and the token is ours
    r = host.check_output(f"curl -s -X POST --cacert {CA['nomad']} https://127.0.0.1:4646/v1/acl/bootstrap")
    assert "ACL bootstrap already done" in r
    out = host.check_output(f"curl -sf -H 'Authorization: Bearer {_token('nomad-management')}' --cacert {CA['nomad']} "
                            "https://127.0.0.1:4646/v1/acl/token/self")
    assert json.loads(out)["Type"] == "management"
    r = host.check_output(f"curl -s -X PUT --cacert {CA['consul']} https://127.0.0.1:8501/v1/acl/bootstrap")
    assert "ACL bootstrap no longer allowed" in r

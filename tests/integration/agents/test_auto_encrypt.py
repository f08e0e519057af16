"""Consul auto-encrypt on the stand-in, driven as an operator sets it up: servers with certificates from
`consul tls cert create`, connect { enabled = true } and auto_encrypt { allow_tls = true }; clients with
only the CA file and auto_encrypt { tls = true }, getting their certificate from the Connect CA."""

from __future__ import annotations

import hashlib
import json
import re
import socket
import ssl

import pytest

from sandbox.agents.shapes import conforms, samples

from .conftest import http, run, wait_for
from .test_tls import _pki

x509 = pytest.importorskip("cryptography.x509")


def _server_cfg(net, pki, extra="", i=1, expect=1):
    join = ", ".join(f'"{net(j)}"' for j in range(1, expect + 1) if j != i)
    return f'''node_name = "s{i}"
data_dir = "data"
server = true
bootstrap_expect = {expect}
bind_addr = "{net(i)}"
client_addr = "{net(i)}"
retry_join = [{join}]
retry_interval = "1s"
performance {{ raft_multiplier = 1 }}
ports {{ https = 8501 }}
connect {{ enabled = true }}
auto_encrypt {{ allow_tls = true }}
tls {{
  defaults {{
    ca_file = "{pki}/consul-agent-ca.pem"
    cert_file = "{pki}/dc1-server-consul-0.pem"
    key_file = "{pki}/dc1-server-consul-0-key.pem"
    verify_incoming = true
    verify_outgoing = true
  }}
  https {{ verify_incoming = false }}
  internal_rpc {{ verify_server_hostname = true }}
}}
{extra}'''


def _client_cfg(net, i, pki, *, auto_encrypt=True):
    return f'''node_name = "n{i}"
data_dir = "data"
bind_addr = "{net(i)}"
client_addr = "{net(i)}"
retry_join = ["{net(1)}"]
retry_interval = "1s"
{"ports { https = 8501 }" if auto_encrypt else ""}
tls {{
  defaults {{
    ca_file = "{pki}/consul-agent-ca.pem"
    verify_outgoing = true
  }}
  internal_rpc {{ verify_server_hostname = true }}
}}
''' + ("auto_encrypt {\n  tls = true\n  dns_san = [\"node.example\"]\n}\n" if auto_encrypt else "")


def _https(addr, path, pki):
    ctx = ssl.create_default_context(cafile=str(pki / "consul-agent-ca.pem"))
    ctx.check_hostname = False
    import urllib.request
    with urllib.request.urlopen(f"https://{addr}{path}", context=ctx, timeout=5) as r:
        return r.status, json.loads(r.read()), dict(r.headers)


def _roots(net, pki, i=1):
    return wait_for(lambda: (lambda r: r if r[1]["Roots"] else None)(_https(f"{net(i)}:8501", "/v1/connect/ca/roots", pki)),
                    30, what="the Connect CA root")


def test_client_with_auto_encrypt_joins_servers_that_verify_incoming(consul, agents, net, tmp_path):
    pki = _pki(consul, tmp_path / "pki", "consul", "dc1", net(1))
    s1 = agents(consul, _server_cfg(net, pki), "s1")
    _status, roots, _h = _roots(net, pki)
    c2 = agents(consul, _client_cfg(net, 2, pki), "c2")
    # the client's RPC (verify_incoming on the server) works with the certificate it was given: a write through
    # it, read back on the server; its anti-entropy registers it in the catalog
    wait_for(lambda: http(f"{net(2)}:8500", "/v1/kv/via-client", "PUT", b"1")[0] == 200, 30, what="kv put via the client")
    assert _https(f"{net(1)}:8501", "/v1/kv/via-client?raw", pki)[1] == 1
    wait_for(lambda: "n2" in [n["Node"] for n in _https(f"{net(1)}:8501", "/v1/catalog/nodes", pki)[1]], 20,
             what="n2 in the catalog")
    assert "signed agent certificate: agent=n2" in s1.log
    # the client serves HTTPS with that certificate: signed by the Connect root, with the SANs Consul gives agents
    ctx = ssl.create_default_context(cadata=roots["Roots"][0]["RootCert"])
    ctx.check_hostname = False
    with socket.create_connection((net(2), 8501), timeout=5) as raw, ctx.wrap_socket(raw) as s:
        sans = s.getpeercert()["subjectAltName"]
    assert ("URI", f"spiffe://{roots['TrustDomain']}/agent/client/dc/dc1/id/n2") in sans
    assert {("DNS", "localhost"), ("DNS", "node.example"), ("IP Address", "127.0.0.1"), ("IP Address", net(2))} <= set(sans)
    # ... which the operator's CA does not know (the certificate is the Connect CA's, not a file's)
    ctx = ssl.create_default_context(cafile=str(pki / "consul-agent-ca.pem"))
    ctx.check_hostname = False
    with socket.create_connection((net(2), 8501), timeout=5) as raw, pytest.raises(ssl.SSLCertVerificationError):
        ctx.wrap_socket(raw)
    # the key is kept in memory: no private key under the client's directory
    assert not [p for p in c2.workdir.rglob("*") if p.is_file() and b"PRIVATE KEY" in p.read_bytes()]
    # the agent-local roots endpoint on the client answers the same roots
    status, local = http(f"{net(2)}:8500", "/v1/agent/connect/ca/roots")
    assert status == 200 and local["ActiveRootID"] == roots["ActiveRootID"]


def test_client_without_certificate_or_auto_encrypt_is_refused(consul, agents, net, tmp_path):
    pki = _pki(consul, tmp_path / "pki", "consul", "dc1", net(1))
    s1 = agents(consul, _server_cfg(net, pki), "s1")
    _roots(net, pki)
    agents(consul, _client_cfg(net, 3, pki, auto_encrypt=False), "c3")
    # gossip works (no TLS in gossip), RPC does not: the server wants a client certificate
    wait_for(lambda: len(http(f"{net(3)}:8500", "/v1/agent/members")[1]) == 2, 20, what="c3 gossiping")
    status, body = http(f"{net(3)}:8500", "/v1/kv/x", "PUT", b"1")
    assert status == 500 and "remote error: tls: certificate required" in body, body
    wait_for(lambda: "TLS handshake error" in s1.log, 10, what="the server's handshake log")
    # the connection an auto-encrypt client uses before it has a certificate may call AutoEncrypt.Sign only
    reply = _insecure_rpc(net, pki, "KVS.Apply", {})
    assert reply.startswith(b"HTTP/1.1 404") and b"rpc: can't find service KVS.Apply" in reply, reply
    # ... and AutoEncrypt.Sign signs agents' CSRs only (not a service's identity)
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    key = ec.generate_private_key(ec.SECP256R1())
    uri = "spiffe://dummy.trustdomain/ns/default/dc/dc1/svc/web"
    csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
           .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), critical=False)
           .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode())
    reply = _insecure_rpc(net, pki, "AutoEncrypt.Sign", {"args": {"Datacenter": "dc1", "CSR": csr}})
    assert reply.startswith(b"HTTP/1.1 400") and f"SPIFFE ID in CSR must be an agent ID, got {uri}".encode() in reply


def _insecure_rpc(net, pki, method, body) -> bytes:
    """An RPC on Consul's RPCTLSInsecure connection: the 0x07 byte, then TLS without a client certificate."""
    ctx = ssl.create_default_context(cafile=str(pki / "consul-agent-ca.pem"))
    ctx.check_hostname = False
    data = json.dumps(body).encode()
    with socket.create_connection((net(1), 8300), timeout=5) as raw:
        raw.sendall(b"\x07")
        with ctx.wrap_socket(raw) as s:
            s.sendall(f"POST /rpc/{method} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}\r\n"
                      "Connection: close\r\n\r\n".encode() + data)
            reply = b""
            while chunk := s.recv(65536):
                reply += chunk
    return reply


def test_roots_endpoint_shape_and_root_kept_across_restart(consul, agents, net, tmp_path):
    pki = _pki(consul, tmp_path / "pki", "consul", "dc1", net(1))
    s1 = agents(consul, _server_cfg(net, pki), "s1")
    status, roots, headers = _roots(net, pki)
    assert status == 200 and conforms(samples("consul")["GET /v1/connect/ca/roots"], roots) == []
    assert int(headers["X-Consul-Index"]) > 0
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.consul", roots["TrustDomain"])
    (root,) = roots["Roots"]
    assert root["Active"] is True and root["ID"] == roots["ActiveRootID"] and root["Name"] == "Consul CA Primary Cert"
    assert root["ExternalTrustDomain"] + ".consul" == roots["TrustDomain"]
    cert = x509.load_pem_x509_certificate(root["RootCert"].encode())
    # the ID is the certificate's SHA-1 fingerprint, the URI SAN the trust domain, as Consul makes them
    from cryptography.hazmat.primitives.serialization import Encoding
    assert root["ID"] == ":".join(f"{b:02x}" for b in hashlib.sha1(cert.public_bytes(Encoding.DER)).digest())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [f"spiffe://{roots['TrustDomain']}"]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert "PRIVATE" not in json.dumps(roots)  # the signing key stays in the servers' state
    # ?pem=true: the chain as PEM
    ctx = ssl.create_default_context(cafile=str(pki / "consul-agent-ca.pem"))
    ctx.check_hostname = False
    import urllib.request
    with urllib.request.urlopen(f"https://{net(1)}:8501/v1/connect/ca/roots?pem=true", context=ctx, timeout=5) as r:
        assert r.headers["Content-Type"] == "application/pem-certificate-chain"
        assert r.read().decode() == root["RootCert"]
    # a restarted server (a new leadership) keeps the root from the replicated state
    s1.stop()
    s1.start()
    wait_for(lambda: "cluster leadership acquired" in s1.log.split("Caught signal")[-1], 30, what="leadership again")
    assert _roots(net, pki)[1]["ActiveRootID"] == roots["ActiveRootID"]


def test_server_without_connect_refuses_allow_tls_at_start(consul, agents, net, tmp_path):
    pki = _pki(consul, tmp_path / "pki", "consul", "dc1", net(1))
    cfg = _server_cfg(net, pki).replace("connect { enabled = true }\n", "")
    a = agents(consul, cfg, "s1")
    assert a.proc.wait(20) == 1
    assert "auto_encrypt.allow_tls" in a.log and "connect { enabled = true }" in a.log
    r = run(consul, "validate", str(a.workdir / "config"))
    assert r.returncode == 1 and "auto_encrypt.allow_tls" in r.stderr + r.stdout
    # the other Connect settings the stand-in does not implement are refused by name too
    for extra, key in (('ca_provider = "vault"', "connect.ca_provider"), ('ca_config { leaf_cert_ttl = "1h" }', "connect.ca_config")):
        (a.workdir / "config" / "agent.hcl").write_text(
            _server_cfg(net, pki).replace("connect { enabled = true }", f"connect {{\n  enabled = true\n  {extra}\n}}"))
        r = run(consul, "validate", str(a.workdir / "config"))
        assert r.returncode == 1 and key in r.stderr + r.stdout, (key, r.stderr)


def test_auto_encrypt_needs_node_write_with_acls(consul, agents, net, tmp_path):
    """With ACLs the servers sign only for a token with node:write on the agent's node (acl.tokens.agent),
    as Consul does: the anonymous token is refused and the client keeps asking."""
    pki = _pki(consul, tmp_path / "pki", "consul", "dc1", net(1))
    mgmt = "7e8d6c5b-4a39-4c2d-9e1f-0a1b2c3d4e5f"
    acl = f'acl {{\n  enabled = true\n  default_policy = "deny"\n  tokens {{ initial_management = "{mgmt}" }}\n}}\n'
    agents(consul, _server_cfg(net, pki, acl), "s1")
    _roots(net, pki)
    c2 = agents(consul, _client_cfg(net, 2, pki), "c2")
    wait_for(lambda: "Permission denied: anonymous token lacks permission 'node:write' on" in c2.log, 20,
             what="the refusal in the client's log")
    wait_for(lambda: "No servers successfully responded to the auto-encrypt request" in c2.log, 10, what="the retry")
    assert c2.alive()
    with pytest.raises(OSError):
        socket.create_connection((net(2), 8500), timeout=2).close()  # nothing served before a certificate
    c4 = agents(consul, _client_cfg(net, 4, pki) + f'acl {{\n  enabled = true\n  tokens {{ agent = "{mgmt}" }}\n}}\n', "c4")
    wait_for(lambda: "auto-encrypt certificate received" in c4.log, 20, what="c4's certificate")


def test_leader_change_keeps_the_root(consul, agents, net, tmp_path):
    """The root lives in the replicated state: after a leadership transfer the new leader neither makes
    another one nor loses the old, and it signs for a client that joins then."""
    pki = _pki(consul, tmp_path / "pki", "consul", "dc1", net(1))
    for i in (1, 2, 3):
        agents(consul, _server_cfg(net, pki, i=i, expect=3), f"s{i}")
    roots = _roots(net, pki)[1]
    leader = _https(f"{net(1)}:8501", "/v1/status/leader", pki)[1]
    ctx = ssl.create_default_context(cafile=str(pki / "consul-agent-ca.pem"))
    ctx.check_hostname = False
    import urllib.request
    req = urllib.request.Request(f"https://{net(1)}:8501/v1/operator/raft/transfer-leader", method="POST")
    with urllib.request.urlopen(req, context=ctx, timeout=15) as r:
        assert json.loads(r.read())["Success"] is True
    wait_for(lambda: _https(f"{net(1)}:8501", "/v1/status/leader", pki)[1] not in ("", leader), 20, what="a new leader")
    for i in (1, 2, 3):  # every server answers the same single root
        assert _roots(net, pki, i)[1]["Roots"] == roots["Roots"]
    c4 = agents(consul, _client_cfg(net, 4, pki), "c4")
    wait_for(lambda: "auto-encrypt certificate received" in c4.log, 30, what="c4's certificate")
    wait_for(lambda: http(f"{net(4)}:8500", "/v1/kv/after-transfer", "PUT", b"1")[0] == 200, 20, what="RPC from c4")

"""The stand-in's Connect CA: the root the leader stores once, what the roots view shows of it, and the
checks AutoEncrypt.Sign makes on an agent's CSR before signing (as Consul's ConnectCA.Sign does)."""

from __future__ import annotations

import ssl

import pytest

from sandbox.agents import connect_ca
from sandbox.agents import consul_state as cs

x509 = pytest.importorskip("cryptography.x509")


@pytest.fixture(scope="module")
def ca():
    return connect_ca.new_root()


def test_root_is_stored_once_and_its_key_never_shown(ca):
    st = cs.initial_state()
    assert cs.apply(st, {"op": "connect_ca_init", "ca": ca}, 5) is True
    # a second leader's initialisation finds the root and keeps it
    assert cs.apply(st, {"op": "connect_ca_init", "ca": connect_ca.new_root()}, 9) is False
    idx, view = cs.VIEWS["connect_ca_roots"](st)
    assert idx == 5 and view["ActiveRootID"] == ca["Root"]["ID"]
    assert view["Roots"][0]["CreateIndex"] == view["Roots"][0]["ModifyIndex"] == 5
    assert "PRIVATE KEY" not in repr(view) and "SigningKey" not in view["Roots"][0]
    assert view["TrustDomain"] == ca["ClusterID"] + ".consul"


def _csr(uri_dc="dc1", node="n2"):
    return connect_ca.agent_csr(node, uri_dc, ["localhost"], ["127.0.0.1", "10.0.0.5"])


def test_agent_certificate_has_the_trust_domain_and_the_csr_sans(ca):
    key, csr = _csr()
    out = connect_ca.sign_agent_csr(ca, csr, "dc1")
    cert = x509.load_pem_x509_certificate(out["CertPEM"].encode())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    want = f"spiffe://{ca['TrustDomain']}/agent/client/dc/dc1/id/n2"  # the dummy trust domain replaced
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [want] and out["AgentURI"] == want
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(i) for i in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "10.0.0.5"]
    # the pair loads (from memory) and verifies against the root
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    connect_ca.load_pair_from_memory(ctx, out["CertPEM"], key)
    root = x509.load_pem_x509_certificate(ca["Root"]["RootCert"].encode())
    cert.verify_directly_issued_by(root)  # raises if the signature is not the root's
    assert cert.issuer == root.subject and out["Agent"] == "n2"


def test_sign_refuses_other_datacenters_non_agent_ids_and_acl_denials(ca):
    _k, csr = _csr(uri_dc="dc2")
    with pytest.raises(ValueError, match="SPIFFE ID in CSR from a different datacenter: dc2"):
        connect_ca.sign_agent_csr(ca, csr, "dc1")
    with pytest.raises(ValueError, match="failed to parse CSR"):
        connect_ca.sign_agent_csr(ca, "not a csr", "dc1")
    _k, csr = _csr()
    with pytest.raises(PermissionError, match="lacks permission 'node:write'"):
        connect_ca.sign_agent_csr(ca, csr, "dc1", lambda node: f"lacks permission 'node:write' on \"{node}\"")
    assert connect_ca.sign_agent_csr(ca, csr, "dc1", lambda node: None)["Agent"] == "n2"

"""Consul's Connect CA with the built-in provider, only as far as auto-encrypt needs it: the root the raft
leader creates once (kept in the replicated state, key included, as the built-in provider keeps it, so a
new leader keeps the same root), the /v1/connect/ca/roots shape, the signing of agent certificates
(AutoEncrypt.Sign), and the client side: key, CSR, and the signed certificate kept in memory.

Certificates need the Python `cryptography` package; only agents with connect or auto_encrypt import it."""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
import secrets
import ssl
import uuid

from .tls import TLSConfigError

ROOT_TTL = dt.timedelta(hours=87600)   # ca_config.root_cert_ttl default (10 years)
LEAF_TTL = dt.timedelta(hours=72)      # ca_config.leaf_cert_ttl default
# The client cannot know the trust domain before its first request: it asks with this one and the
# server substitutes its own (agent/auto-config in Consul)
DUMMY_TRUST_DOMAIN = "dummy.trustdomain"


def _crypto():
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
    except ImportError:
        raise TLSConfigError("connect and auto_encrypt need the Python cryptography package on the host "
                             "(Debian: apt-get install python3-cryptography)") from None
    return x509, hashes, serialization, ec


def require():
    """Fail at agent start (not at first use) when certificates cannot be made here."""
    _crypto()


def _colon_hex(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


def _now():
    return dt.datetime.now(dt.UTC)


def _rfc3339(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_root(cluster_id: str | None = None) -> dict:
    """The built-in provider's root: ECDSA P-256, CN pri-<id>.consul.ca.<cluster id prefix>.consul, URI SAN
    spiffe://<trust domain>. Returns the stored form (the private key stays in the state, never in a view)."""
    x509, hashes, serialization, ec = _crypto()
    from cryptography.x509.oid import NameOID
    cluster_id = cluster_id or str(uuid.uuid4())
    trust_domain = f"{cluster_id}.consul"
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    serial = x509.random_serial_number() >> 96  # Consul's serials are uint64
    cn = f"pri-{secrets.token_hex(4)[:7]}.consul.ca.{cluster_id[:8]}.consul"
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(serial).not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + ROOT_TTL)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(f"spiffe://{trust_domain}")]),
                           critical=False)
            .add_extension(ski, critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
            .sign(key, hashes.SHA256()))
    der = cert.public_bytes(serialization.Encoding.DER)
    pub = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    root = {"ID": _colon_hex(hashlib.sha1(der).digest()), "Name": "Consul CA Primary Cert", "SerialNumber": serial,
            "SigningKeyID": _colon_hex(hashlib.sha256(pub).digest()), "ExternalTrustDomain": cluster_id,
            "NotBefore": _rfc3339(now - dt.timedelta(minutes=1)), "NotAfter": _rfc3339(now + ROOT_TTL),
            "RootCert": cert.public_bytes(serialization.Encoding.PEM).decode(), "IntermediateCerts": None,
            "Active": True, "PrivateKeyType": "ec", "PrivateKeyBits": 256}
    return {"ClusterID": cluster_id, "TrustDomain": trust_domain, "Root": root,
            "SigningKey": _key_pem(key, serialization).decode()}


def roots_view(ca: dict | None) -> dict:
    """GET /v1/connect/ca/roots: the public part only."""
    if not ca:
        return {"ActiveRootID": "", "TrustDomain": "", "Roots": []}
    root = dict(ca["Root"], CreateIndex=ca["CreateIndex"], ModifyIndex=ca["ModifyIndex"])
    return {"ActiveRootID": root["ID"], "TrustDomain": ca["TrustDomain"], "Roots": [root]}


def sign_agent_csr(ca: dict, csr_pem: str, dc: str, node_allowed=None) -> dict:
    """ConnectCA.Sign for an agent CSR: the URI SAN must be spiffe://<any>/agent/client/dc/<dc>/id/<node>; the
    certificate gets the cluster's trust domain, the CSR's DNS and IP SANs, and leaf_cert_ttl. node_allowed(node)
    -> error text or None (the node:write ACL check). Returns Consul's IssuedCert fields."""
    x509, hashes, serialization, _ec = _crypto()
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    try:
        csr = x509.load_pem_x509_csr(csr_pem.encode())
    except ValueError as e:
        raise ValueError(f"failed to parse CSR: {e}") from None
    if not csr.is_signature_valid:
        raise ValueError("CSR signature is invalid")
    try:
        sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        sans = x509.SubjectAlternativeName([])
    uris = sans.get_values_for_type(x509.UniformResourceIdentifier)
    if len(uris) != 1:
        raise ValueError("CSR SAN contains an invalid number of URIs: " + str(len(uris)))
    parts = uris[0].removeprefix("spiffe://").split("/")
    if len(parts) != 7 or parts[1:5] != ["agent", "client", "dc", parts[4]] or parts[5] != "id":
        raise ValueError(f"SPIFFE ID in CSR must be an agent ID, got {uris[0]}")
    agent_dc, node = parts[4], parts[6]
    if agent_dc != dc:
        raise ValueError(f"SPIFFE ID in CSR from a different datacenter: {agent_dc}, agent ID from CSR: {uris[0]}")
    if node_allowed:
        why = node_allowed(node)
        if why:
            raise PermissionError(why)
    uri = f"spiffe://{ca['TrustDomain']}/agent/client/dc/{dc}/id/{node}"
    root = x509.load_pem_x509_certificate(ca["Root"]["RootCert"].encode())
    key = serialization.load_pem_private_key(ca["SigningKey"].encode(), password=None)
    now = _now()
    ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    names = [x509.UniformResourceIdentifier(uri)] + [x509.DNSName(d) for d in sans.get_values_for_type(x509.DNSName)] \
        + [x509.IPAddress(i) for i in sans.get_values_for_type(x509.IPAddress)]
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{node}.agnt.{ca['ClusterID'][:8]}.consul")]))
            .issuer_name(root.subject).public_key(csr.public_key()).serial_number(x509.random_serial_number() >> 96)
            .not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + LEAF_TTL)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                                         data_encipherment=True, key_agreement=True, key_cert_sign=False, crl_sign=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(csr.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
            .sign(key, hashes.SHA256()))
    return {"SerialNumber": _colon_hex(cert.serial_number.to_bytes(8, "big")),
            "CertPEM": cert.public_bytes(serialization.Encoding.PEM).decode(), "Agent": node, "AgentURI": uri,
            "ValidAfter": _rfc3339(now - dt.timedelta(minutes=1)), "ValidBefore": _rfc3339(now + LEAF_TTL)}


def agent_csr(node: str, dc: str, dns: list[str], ips: list[str]) -> tuple[str, str]:
    """The client's key and CSR for AutoEncrypt.Sign: (key PEM, CSR PEM)."""
    x509, hashes, serialization, ec = _crypto()
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.UniformResourceIdentifier(f"spiffe://{DUMMY_TRUST_DOMAIN}/agent/client/dc/{dc}/id/{node}")]
    names += [x509.DNSName(d) for d in dict.fromkeys(dns)]
    names += [x509.IPAddress(ipaddress.ip_address(i)) for i in dict.fromkeys(ips)]
    csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
           .add_extension(x509.SubjectAlternativeName(names), critical=False).sign(key, hashes.SHA256()))
    return _key_pem(key, serialization).decode(), csr.public_bytes(serialization.Encoding.PEM).decode()


def load_pair_from_memory(ctx: ssl.SSLContext, cert_pem: str, key_pem: str):
    """ssl loads certificates from paths only: hand it an anonymous in-memory file (memfd), so the auto-encrypt
    key never touches the disk (Consul keeps it in memory too)."""
    fds = []
    try:
        for data in (cert_pem, key_pem):
            fd = os.memfd_create("consul-auto-encrypt", os.MFD_CLOEXEC)
            os.write(fd, data.encode())
            fds.append(fd)
        ctx.load_cert_chain(f"/proc/self/fd/{fds[0]}", f"/proc/self/fd/{fds[1]}")
    finally:
        for fd in fds:
            os.close(fd)


def _key_pem(key, serialization) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())

"""A private CA and a server certificate for 127.0.0.1 (kept in the state dir across restarts)."""
from __future__ import annotations

import datetime as dt
import ipaddress
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

AZURE_HOSTNAMES = ("management.azure.com", "login.microsoftonline.com", "management.core.windows.net",
                   "*.vault.azure.net")  # Key Vault's data plane: every vault is a host name of its own


def _write(path: str, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)


def _has_names(crt: str) -> bool:
    """A server certificate of an older state dir may lack names added since (then it is made again)."""
    with open(crt, "rb") as fh:
        cert = x509.load_pem_x509_certificate(fh.read())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    return all(n in names for n in AZURE_HOSTNAMES)


def ensure_certs(state_dir: str) -> tuple[str, str, str]:
    """Return (ca.pem, server cert, server key) paths, creating them on first use."""
    ca_pem = os.path.join(state_dir, "ca.pem")
    ca_key_path = os.path.join(state_dir, "ca.key")
    crt = os.path.join(state_dir, "server.pem")
    key = os.path.join(state_dir, "server.key")
    if all(os.path.exists(p) for p in (ca_pem, ca_key_path, crt, key)) and _has_names(crt):
        return ca_pem, crt, key
    now = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hashistack sandbox ARM CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    srv_key = ec.generate_private_key(ec.SECP256R1())
    srv_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name).public_key(srv_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + dt.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost"),
            # sandbox hosts reach the emulator under Azure's own names (their /etc/hosts points there)
            *(x509.DNSName(name) for name in AZURE_HOSTNAMES)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(srv_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    nokey = serialization.NoEncryption()
    _write(ca_key_path, ca_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, nokey))
    _write(key, srv_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, nokey))
    _write(crt, srv_cert.public_bytes(pem))
    _write(ca_pem, ca_cert.public_bytes(pem))
    os.chmod(ca_key_path, 0o600)
    os.chmod(key, 0o600)
    return ca_pem, crt, key

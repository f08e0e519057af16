"""TLS for the stand-ins: the contexts of the HTTPS API and of internal RPC built from the products'
settings, peer-name verification as the products do it (`server.<dc>.consul`, `server.<region>.nomad`),
errors worded like Go's crypto/tls and net/http, and the `tls ca create` / `tls cert create` commands
(the `cryptography` package, imported only by them: the agents themselves need nothing but ssl)."""

from __future__ import annotations

import ipaddress
import os
import ssl
from dataclasses import dataclass


class TLSConfigError(ValueError):
    """A TLS setting the agent cannot start with (missing file, verify_* without a CA, ...)."""


class PeerNameError(ssl.SSLError):
    """The peer's certificate does not name the expected host (Go's x509.HostnameError)."""


# ---------------------------------------------------------------- contexts

def server_context(ca: str | None, cert: str, key: str, require_client_cert: bool, *, plaintext_ok: bool = False,
                   what: str = "") -> ssl.SSLContext:
    """A listener's context. require_client_cert: the peer must present a certificate signed by ca
    (verify_incoming / verify_https_client / Nomad's RPC mTLS). plaintext_ok: the listener also takes
    plain connections (Consul RPC without verify_incoming, Nomad's rpc_upgrade_mode)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_pair(ctx, cert, key, what)
    if ca:
        _load_ca(ctx, ca, what)
    if require_client_cert:
        if not ca:
            raise TLSConfigError(f"{what}: VerifyIncoming set, and no CA certificate provided! (set ca_file)")
        ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.plaintext_ok = plaintext_ok  # read by net.serve
    return ctx


def client_context(ca: str | None, cert: str | None = None, key: str | None = None, *, verify: bool = True,
                   check_name: bool = True, server_name: str | None = None, what: str = "") -> ssl.SSLContext:
    """An outgoing context: the chain is checked against ca (unless verify is False); with check_name the
    peer's certificate must name server_name, or the host dialled when there is none (the products' RPC
    checks `server.<dc>.consul` with verify_server_hostname and only the chain without it)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False  # checked by check_peer_name, with Go's wording
    if verify:
        if ca:
            _load_ca(ctx, ca, what)
        else:
            ctx.load_default_certs()
    else:
        ctx.verify_mode = ssl.CERT_NONE
    if cert or key:
        if not (cert and key):
            raise TLSConfigError(f"{what}: a client certificate needs both the certificate and its key")
        _load_pair(ctx, cert, key, what)
    ctx.check_name = verify and check_name  # read by check_peer_name
    ctx.server_name = server_name
    return ctx


def _load_pair(ctx, cert, key, what):
    for f in (cert, key):
        if not os.path.isfile(f):
            raise TLSConfigError(f"{what}: failed to load cert/key pair: open {f}: no such file or directory")
    try:
        ctx.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as e:
        raise TLSConfigError(f"{what}: failed to load cert/key pair ({cert}, {key}): {e}") from None


def _load_ca(ctx, ca, what):
    try:
        ctx.load_verify_locations(cafile=ca)
    except FileNotFoundError:
        raise TLSConfigError(f"{what}: failed to read CA file: open {ca}: no such file or directory") from None
    except (ssl.SSLError, OSError) as e:
        raise TLSConfigError(f"{what}: failed to load CA file {ca}: {e}") from None


def check_peer_name(sock: ssl.SSLSocket, ctx: ssl.SSLContext, host: str):
    """After the handshake: the certificate must name ctx.server_name (or the host dialled), as Go's
    VerifyHostname does (IP SANs for an IP address, DNS SANs otherwise)."""
    if not getattr(ctx, "check_name", True):
        return
    name = getattr(ctx, "server_name", None) or host
    sans = (sock.getpeercert() or {}).get("subjectAltName", ())
    try:
        ipaddress.ip_address(name)
        kind = "IP Address"
    except ValueError:
        kind = "DNS"
    valid = [v for k, v in sans if k == kind]
    if not any(_name_matches(v, name, kind) for v in valid):
        shown = ", ".join(valid)
        msg = (f"x509: certificate is valid for {shown}, not {name}" if valid else
               f"x509: certificate is not valid for any names, but wanted to match {name}")
        raise PeerNameError(f"tls: failed to verify certificate: {msg}")


def _name_matches(pattern: str, name: str, kind: str) -> bool:
    if kind != "DNS":
        return ipaddress.ip_address(pattern) == ipaddress.ip_address(name)
    p, n = pattern.lower().rstrip("."), name.lower().rstrip(".")
    if p.startswith("*."):
        return n.count(".") >= p.count(".") and n.split(".", 1)[1] == p[2:]
    return p == n


# Go's wording for what OpenSSL reports (crypto/tls alerts, x509 verification, net/http)
_ALERTS = {
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "remote error: tls: certificate required",
    "TLSV1_ALERT_UNKNOWN_CA": "remote error: tls: unknown certificate authority",
    "SSLV3_ALERT_BAD_CERTIFICATE": "remote error: tls: bad certificate",
    "SSLV3_ALERT_HANDSHAKE_FAILURE": "remote error: tls: handshake failure",
    "WRONG_VERSION_NUMBER": "http: server gave HTTP response to HTTPS client",
    "RECORD_LAYER_FAILURE": "http: server gave HTTP response to HTTPS client",
}


def go_error(e: ssl.SSLError) -> str:
    if isinstance(e, PeerNameError):
        return str(e.args[0])
    if isinstance(e, ssl.SSLCertVerificationError):
        code = getattr(e, "verify_code", 0)
        if code in (2, 18, 19, 20, 21):
            return "tls: failed to verify certificate: x509: certificate signed by unknown authority"
        if code in (9, 10):
            return "tls: failed to verify certificate: x509: certificate has expired or is not yet valid"
        return f"tls: failed to verify certificate: x509: {getattr(e, 'verify_message', e)}"
    reason = getattr(e, "reason", None) or ""
    if reason in _ALERTS:
        return _ALERTS[reason]
    if isinstance(e, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
        return "EOF"
    return f"tls: {reason.lower().replace('_', ' ') or e}"


# ---------------------------------------------------------------- the products' settings

@dataclass
class Contexts:
    http: ssl.SSLContext | None = None          # the HTTPS API listener
    rpc_server: ssl.SSLContext | None = None    # the internal RPC/raft listener
    rpc: ssl.SSLContext | None = None           # outgoing RPC/raft

    def get(self, kind: str):
        return {"http": self.http, "rpc-server": self.rpc_server, "rpc": self.rpc}[kind]


def consul_contexts(cfg: dict, server: bool) -> Contexts:
    """tls { defaults {...} internal_rpc {...} https {...} } as Consul reads it: a section's setting wins over
    defaults. HTTPS is served only on ports.https; internal RPC listens with TLS when the server has a
    certificate (and still takes plain connections unless verify_incoming); outgoing RPC uses TLS only with
    verify_outgoing, checking server.<dc>.consul with internal_rpc.verify_server_hostname."""
    t = cfg.get("tls") or {}
    d = t.get("defaults") or {}

    def pick(section, k, default=None):
        s = t.get(section) or {}
        return s[k] if s.get(k) not in (None, "") else d.get(k, default)

    out = Contexts()
    dc = cfg.get("datacenter", "dc1")
    ports = cfg.get("ports") or {}
    if ports.get("https", -1) not in (-1, None):
        cert, key = pick("https", "cert_file"), pick("https", "key_file")
        if not (cert and key):
            raise TLSConfigError("ports.https is set but no certificate is configured: set tls.defaults.cert_file "
                                 "and tls.defaults.key_file (or the tls.https ones)")
        out.http = server_context(pick("https", "ca_file"), cert, key, bool(pick("https", "verify_incoming", False)),
                                  what="tls.https")
    ca, cert, key = (pick("internal_rpc", k) for k in ("ca_file", "cert_file", "key_file"))
    vin = bool(pick("internal_rpc", "verify_incoming", False))
    vsh = bool((t.get("internal_rpc") or {}).get("verify_server_hostname", False))
    if server and (cert or key):
        if not (cert and key):
            raise TLSConfigError("tls.internal_rpc: a certificate needs both cert_file and key_file")
        out.rpc_server = server_context(ca, cert, key, vin, plaintext_ok=not vin, what="tls.internal_rpc")
    elif server and vin:
        raise TLSConfigError("tls.internal_rpc: verify_incoming is set but no cert_file/key_file is configured")
    if pick("internal_rpc", "verify_outgoing", False):
        if not ca:
            raise TLSConfigError("tls.internal_rpc: verify_outgoing set, and no CA certificate provided! (set ca_file)")
        out.rpc = client_context(ca, cert, key, check_name=vsh, server_name=f"server.{dc}.consul", what="tls.internal_rpc")
    return out


def nomad_contexts(cfg: dict, server: bool) -> Contexts:
    """tls { http rpc ca_file cert_file key_file verify_server_hostname verify_https_client rpc_upgrade_mode }:
    http = true serves the API over HTTPS only; rpc = true is mutual TLS on the RPC port (plain connections
    too in rpc_upgrade_mode); verify_server_hostname checks server.<region>.nomad."""
    t = cfg.get("tls") or {}
    out = Contexts()
    ca, cert, key = t.get("ca_file") or None, t.get("cert_file") or None, t.get("key_file") or None
    if (t.get("http") or t.get("rpc")) and not (cert and key):
        raise TLSConfigError("tls: http or rpc is enabled but cert_file and key_file are not both set")
    if t.get("http"):
        out.http = server_context(ca, cert, key, bool(t.get("verify_https_client", False)), what="tls")
    if t.get("rpc"):
        if not ca:
            raise TLSConfigError("tls: rpc = true needs ca_file (RPC is mutual TLS)")
        upgrade = bool(t.get("rpc_upgrade_mode", False))
        if server:
            out.rpc_server = server_context(ca, cert, key, not upgrade, plaintext_ok=upgrade, what="tls")
        out.rpc = client_context(ca, cert, key, check_name=bool(t.get("verify_server_hostname")),
                                 server_name=f"server.{cfg.get('region', 'global')}.nomad", what="tls")
    return out


# ---------------------------------------------------------------- tls ca create / tls cert create

def _x509():
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError:
        raise TLSConfigError("this command needs the Python cryptography package on the host "
                             "(Debian: apt-get install python3-cryptography)") from None
    return x509, hashes, serialization, ec, ExtendedKeyUsageOID, NameOID


def create_ca(product: str, days: int, domain: str, name_constraint: bool = False, common_name: str = "",
              additional_constraints: tuple = ()) -> tuple[str, str]:
    """<domain>-agent-ca.pem and <domain>-agent-ca-key.pem in the working directory (ECDSA P-256, as the
    products' CLIs make them). Returns the two file names."""
    import datetime as dt
    x509, hashes, serialization, ec, _eku, NameOID = _x509()
    ca_file, key_file = f"{domain}-agent-ca.pem", f"{domain}-agent-ca-key.pem"
    for f in (ca_file, key_file):
        if os.path.exists(f):
            raise TLSConfigError(f"{f} already exists, not overwriting")
    key = ec.generate_private_key(ec.SECP256R1())
    serial = x509.random_serial_number()
    name = x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "US"), x509.NameAttribute(NameOID.POSTAL_CODE, "94105"),
        x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "CA"), x509.NameAttribute(NameOID.LOCALITY_NAME, "San Francisco"),
        x509.NameAttribute(NameOID.STREET_ADDRESS, "101 Second Street"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "HashiCorp Inc."),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name or f"{product.capitalize()} Agent CA {serial}")])
    now = dt.datetime.now(dt.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
         .serial_number(serial).not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + dt.timedelta(days=days))
         .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
         .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                      data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                                      encipher_only=False, decipher_only=False), critical=True)
         .add_extension(ski, critical=False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False))
    if name_constraint:
        permitted = [x509.DNSName(n) for n in (domain, "localhost", *additional_constraints)]
        b = b.add_extension(x509.NameConstraints(permitted_subtrees=permitted, excluded_subtrees=None), critical=True)
    cert = b.sign(key, hashes.SHA256())
    _write(ca_file, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    _write(key_file, _key_pem(key, serialization), 0o600)
    return ca_file, key_file


def create_cert(kind: str, ca_file: str, key_file: str, name: str, cert_file: str, cert_key_file: str, days: int,
                dns: list[str], ips: list[str]) -> None:
    """A certificate for kind server|client|cli, common name `name`, SANs dns + ips, signed by the CA."""
    import datetime as dt
    x509, hashes, serialization, ec, EKU, NameOID = _x509()
    for f in (ca_file, key_file):
        if not os.path.exists(f):
            raise TLSConfigError(f"{f} file missing")
    for f in (cert_file, cert_key_file):
        if os.path.exists(f):
            raise TLSConfigError(f"{f} already exists, not overwriting")
    with open(ca_file, "rb") as fh:
        ca = x509.load_pem_x509_certificate(fh.read())
    with open(key_file, "rb") as fh:
        ca_key = serialization.load_pem_private_key(fh.read(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    sans = [x509.DNSName(n) for n in dict.fromkeys(dns)] + [x509.IPAddress(ipaddress.ip_address(i)) for i in dict.fromkeys(ips)]
    usages = [EKU.CLIENT_AUTH] if kind == "cli" else [EKU.SERVER_AUTH, EKU.CLIENT_AUTH]
    ca_ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
            .sign(ca_key, hashes.SHA256()))
    _write(cert_file, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    _write(cert_key_file, _key_pem(key, serialization), 0o600)


def _key_pem(key, serialization) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


def _write(path: str, data: bytes, mode: int):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


_SERVER_WARNING = """==> WARNING: Server Certificates grants authority to become a
    server and access all state in the cluster including root keys
    and all ACL tokens. Do not distribute them to production hosts
    that are not server nodes. Store them as securely as CA keys."""


def cli(product: str, args: list[str]) -> int:
    """`<product> tls ca create` and `<product> tls cert create` with the products' flags, file names, SANs
    and messages (Consul: <dc>-<kind>-<domain>-<n>.pem; Nomad: <region>-<kind>-<domain>.pem)."""
    import sys

    from .agentbase import parse_cli_flags
    if len(args) < 2 or args[0] not in ("ca", "cert") or args[1] != "create":
        print(f"Usage: {product} tls <ca|cert> create [options]", file=sys.stderr)
        return 1
    region_flag = "dc" if product == "consul" else "region"
    o, multi, _rest = parse_cli_flags(args[2:], ("days", "domain", "common-name", "additional-name-constraint",
                                                 "additional-domain", "ca", "key", "additional-dnsname",
                                                 "additional-ipaddress", "node", region_flag))
    domain = o.get("domain", product)
    try:
        if args[0] == "ca":
            ca, key = create_ca(product, int(o.get("days", 1825)), domain, _true(o.get("name-constraint")),
                                o.get("common-name", ""),
                                tuple(multi.get("additional-name-constraint", []) + multi.get("additional-domain", [])))
            print(f"==> Saved {ca}\n==> Saved {key}" if product == "consul" else
                  f"==> CA Certificate saved to: {ca}\n==> CA Certificate key saved to: {key}")
            return 0
        kinds = [k for k in ("server", "client", "cli") if _true(o.get(k))]
        if len(kinds) != 1:
            print("Please provide either -server, -client, or -cli", file=sys.stderr)
            return 1
        kind = kinds[0]
        where = o.get(region_flag, "dc1" if product == "consul" else "global")
        ca, key = o.get("ca", f"{domain}-agent-ca.pem"), o.get("key", f"{domain}-agent-ca-key.pem")
        name = (f"cli.client.{where}.{domain}" if product == "consul" and kind == "cli" else f"{kind}.{where}.{domain}")
        dns = [name] + ([f"{o['node']}.server.{where}.{domain}"] if kind == "server" and o.get("node") else [])
        dns += ["localhost"] + multi.get("additional-dnsname", [])
        ips = ([] if kind == "cli" else ["127.0.0.1"]) + multi.get("additional-ipaddress", [])
        if product == "consul":
            n = 0
            while os.path.exists(f"{where}-{kind}-{domain}-{n}.pem"):
                n += 1
            base = f"{where}-{kind}-{domain}-{n}"
        else:
            base = f"{where}-{kind}-{domain}"
        create_cert(kind, ca, key, name, f"{base}.pem", f"{base}-key.pem", int(o.get("days", 365)), dns, ips)
        if kind == "server":
            print(_SERVER_WARNING)
        if product == "consul":
            print(f"==> Using {ca} and {key}\n==> Saved {base}.pem\n==> Saved {base}-key.pem")
        else:
            what = {"server": "Server", "client": "Client", "cli": "Cli"}[kind]
            print(f"==> Using CA file {ca} and CA key {key}\n==> {what} Certificate saved to {base}.pem\n"
                  f"==> {what} Certificate key saved to {base}-key.pem")
        return 0
    except (TLSConfigError, ValueError, OSError) as e:
        print(f"==> {e}", file=sys.stderr)
        return 1


def _true(v) -> bool:
    return str(v).lower() in ("1", "t", "true") if v is not None else False

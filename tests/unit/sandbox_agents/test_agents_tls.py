"""TLS of the stand-ins on loopback listeners: the certificates `tls ca create` / `tls cert create` make
(names, SANs), chain and peer-name verification as the products do it, client certificates, plain
connections on TLS ports, and the Go wording of each failure."""

from __future__ import annotations

import os
import socket

import pytest

from sandbox.agents import tls
from sandbox.agents.net import Response, RPCError, call, serve

pytest.importorskip("cryptography")


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """Two CAs (consul, other) and certificates made by the products' CLI commands."""
    root = tmp_path_factory.mktemp("pki")
    cwd = os.getcwd()
    out = {}
    try:
        for name in ("good", "other"):
            d = root / name
            d.mkdir()
            os.chdir(d)
            assert tls.cli("consul", ["ca", "create"]) == 0
            assert tls.cli("consul", ["cert", "create", "-server", "-dc", "dc1"]) == 0
            assert tls.cli("consul", ["cert", "create", "-client", "-dc", "dc1"]) == 0
            assert tls.cli("consul", ["cert", "create", "-server", "-dc", "dc1"]) == 0  # a second one: index 1
            out[name] = d
        os.chdir(root / "good")
        assert tls.cli("nomad", ["ca", "create"]) == 0
        assert tls.cli("nomad", ["cert", "create", "-server", "-region", "eu"]) == 0
        assert tls.cli("nomad", ["cert", "create", "-cli"]) == 0
    finally:
        os.chdir(cwd)
    return out


def _sans(path):
    from cryptography import x509
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return sorted(str(v.value) for v in san), cert


def test_cli_file_names_and_sans(pki):
    g = pki["good"]
    for f in ("consul-agent-ca.pem", "consul-agent-ca-key.pem", "dc1-server-consul-0.pem", "dc1-server-consul-0-key.pem",
              "dc1-server-consul-1.pem", "dc1-client-consul-0.pem", "nomad-agent-ca.pem", "eu-server-nomad.pem",
              "eu-server-nomad-key.pem", "global-cli-nomad.pem"):
        assert (g / f).is_file(), f
    assert oct((g / "consul-agent-ca-key.pem").stat().st_mode & 0o777) == "0o600"
    sans, cert = _sans(g / "dc1-server-consul-0.pem")
    assert sans == ["127.0.0.1", "localhost", "server.dc1.consul"]
    assert cert.issuer.rfc4514_string().startswith("CN=Consul Agent CA ")
    assert _sans(g / "dc1-client-consul-0.pem")[0] == ["127.0.0.1", "client.dc1.consul", "localhost"]
    assert _sans(g / "eu-server-nomad.pem")[0] == ["127.0.0.1", "localhost", "server.eu.nomad"]
    assert _sans(g / "global-cli-nomad.pem")[0] == ["cli.global.nomad", "localhost"]


def test_cli_refuses_to_overwrite_and_needs_one_kind(pki, capsys):
    cwd = os.getcwd()
    os.chdir(pki["good"])
    try:
        assert tls.cli("consul", ["ca", "create"]) == 1
        assert "consul-agent-ca.pem already exists" in capsys.readouterr().err
        assert tls.cli("consul", ["cert", "create"]) == 1
        assert "Please provide either -server, -client, or -cli" in capsys.readouterr().err
    finally:
        os.chdir(cwd)


def _listener(pki, cert="dc1-server-consul-0", ca="good", require_client=False, plaintext_ok=False, internal=False):
    d = pki["good"]
    ctx = tls.server_context(str(pki[ca] / "consul-agent-ca.pem"), str(d / f"{cert}.pem"), str(d / f"{cert}-key.pem"),
                             require_client, plaintext_ok=plaintext_ok)
    port = _free_port()
    srv = serve("127.0.0.1", port, lambda *a: Response({"ok": True}), tls=ctx, internal=internal)
    return srv, f"127.0.0.1:{port}"


def _client(pki, ca="good", cert=None, server_name="server.dc1.consul", check_name=True):
    d = pki[ca]
    pair = (str(d / f"{cert}.pem"), str(d / f"{cert}-key.pem")) if cert else (None, None)
    return tls.client_context(str(d / "consul-agent-ca.pem"), *pair, server_name=server_name, check_name=check_name)


@pytest.fixture
def listeners():
    started = []
    yield started
    for s in started:
        s.shutdown()
        s.server_close()


def test_verified_rpc_with_server_hostname(pki, listeners):
    srv, addr = _listener(pki, require_client=True)
    listeners.append(srv)
    assert call(addr, "/rpc/x", {}, tls=_client(pki, cert="dc1-client-consul-0")) == {"ok": True}


def test_certificate_of_another_ca_refused(pki, listeners):
    srv, addr = _listener(pki)
    listeners.append(srv)
    with pytest.raises(RPCError) as e:
        call(addr, "/v1/kv/k", tls=_client(pki, ca="other"))
    assert e.value.status == 0
    assert str(e.value) == (f'Get "https://{addr}/v1/kv/k": tls: failed to verify certificate: '
                            "x509: certificate signed by unknown authority")


def test_server_hostname_mismatch_refused(pki, listeners):
    srv, addr = _listener(pki, cert="dc1-client-consul-0")  # a client certificate on a server port
    listeners.append(srv)
    with pytest.raises(RPCError) as e:
        call(addr, "/rpc/x", {}, tls=_client(pki))
    assert str(e.value).endswith("tls: failed to verify certificate: x509: certificate is valid for "
                                 "client.dc1.consul, localhost, not server.dc1.consul")
    # without verify_server_hostname only the chain is checked
    assert call(addr, "/rpc/x", {}, tls=_client(pki, check_name=False)) == {"ok": True}


def test_client_certificate_required_and_foreign_client_cert_refused(pki, listeners):
    srv, addr = _listener(pki, require_client=True)
    listeners.append(srv)
    with pytest.raises(RPCError) as e:
        call(addr, "/rpc/x", {}, tls=_client(pki))
    assert "remote error: tls: certificate required" in str(e.value) or "remote error: tls: bad certificate" in str(e.value)
    ctx = _client(pki, cert="dc1-client-consul-0")
    other = pki["other"]
    ctx.load_cert_chain(str(other / "dc1-client-consul-0.pem"), str(other / "dc1-client-consul-0-key.pem"))
    with pytest.raises(RPCError) as e:
        call(addr, "/rpc/x", {}, tls=ctx)
    assert "remote error: tls: unknown certificate authority" in str(e.value)


def test_plain_http_on_https_port_answered_like_go(pki, listeners):
    srv, addr = _listener(pki)
    listeners.append(srv)
    with pytest.raises(RPCError) as e:
        call(addr, "/v1/agent/self")
    assert e.value.status == 400 and str(e.value) == "Client sent an HTTP request to an HTTPS server."


def test_plain_rpc_refused_unless_upgrade_mode(pki, listeners):
    srv, addr = _listener(pki, internal=True)
    listeners.append(srv)
    with pytest.raises(RPCError) as e:
        call(addr, "/rpc/x", {})
    assert e.value.status == 0
    srv2, addr2 = _listener(pki, plaintext_ok=True, internal=True)
    listeners.append(srv2)
    assert call(addr2, "/rpc/x", {}) == {"ok": True}  # plain accepted
    assert call(addr2, "/rpc/x", {}, tls=_client(pki)) == {"ok": True}  # and TLS on the same port


def test_https_client_on_plain_port(listeners):
    port = _free_port()
    srv = serve("127.0.0.1", port, lambda *a: Response({}))
    listeners.append(srv)
    with pytest.raises(RPCError) as e:
        call(f"127.0.0.1:{port}", "/v1/x", tls=tls.client_context(None))
    assert "http: server gave HTTP response to HTTPS client" in str(e.value)


def test_settings_need_their_files():
    with pytest.raises(tls.TLSConfigError, match="ports.https is set but no certificate is configured"):
        tls.consul_contexts({"ports": {"https": 8501}}, server=True)
    with pytest.raises(tls.TLSConfigError, match="failed to load cert/key pair: open /nonexistent.pem"):
        tls.nomad_contexts({"tls": {"http": True, "cert_file": "/nonexistent.pem", "key_file": "/k.pem"}}, server=True)
    assert tls.consul_contexts({}, server=True).get("rpc") is None

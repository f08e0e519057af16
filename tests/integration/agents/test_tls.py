"""TLS between agents and on the API, driven like an operator does: certificates from the products'
`tls ca create` / `tls cert create`, the documented settings, the CLIs' TLS variables."""

from __future__ import annotations

import pytest

from .conftest import run, wait_for

pytest.importorskip("cryptography")


def _pki(exe, d, product, where, extra_ip):
    """A CA and server/client/cli certificates in d, made with `<product> tls ...` (like an operator)."""
    d.mkdir(parents=True, exist_ok=True)
    flag = "-dc" if product == "consul" else "-region"
    for args in (["ca", "create"], ["cert", "create", "-server", flag, where, "-additional-ipaddress", extra_ip],
                 ["cert", "create", "-client", flag, where], ["cert", "create", "-cli", flag, where]):
        r = run(exe, "tls", *args, cwd=d)
        assert r.returncode == 0, r.stderr
    return d


def _consul_cfg(net, i, pki, *, server, kind, join=(), extra="", n=0, vsh=True):
    lines = [f'node_name = "n{i}"', 'data_dir = "data"', f"server = {str(server).lower()}", f'bind_addr = "{net(i)}"',
             f'client_addr = "{net(i)}"', "retry_join = [" + ", ".join(f'"{net(j)}"' for j in join) + "]",
             'retry_interval = "1s"', "performance { raft_multiplier = 1 }",
             "ports { http = -1\n https = 8501 }",
             f'''tls {{
  defaults {{
    ca_file = "{pki}/consul-agent-ca.pem"
    cert_file = "{pki}/dc1-{kind}-consul-{n}.pem"
    key_file = "{pki}/dc1-{kind}-consul-{n}-key.pem"
    verify_incoming = true
    verify_outgoing = true
  }}
  internal_rpc {{ verify_server_hostname = {str(vsh).lower()} }}
}}''']
    if server:
        lines.append("bootstrap_expect = 1")
    return "\n".join(lines) + "\n" + extra


def test_consul_https_api_and_tls_rpc(consul, agents, net, tmp_path):
    good = _pki(consul, tmp_path / "good", "consul", "dc1", net(1))
    other = _pki(consul, tmp_path / "other", "consul", "dc1", net(3))
    agents(consul, _consul_cfg(net, 1, good, server=True, kind="server"), "s1")
    agents(consul, _consul_cfg(net, 2, good, server=False, kind="client", join=(1,)), "c2")
    c3 = agents(consul, _consul_cfg(net, 3, other, server=False, kind="client", join=(1,)), "c3")
    env = {"CONSUL_HTTP_ADDR": f"https://{net(1)}:8501", "CONSUL_CACERT": str(good / "consul-agent-ca.pem"),
           "CONSUL_CLIENT_CERT": str(good / "dc1-cli-consul-0.pem"), "CONSUL_CLIENT_KEY": str(good / "dc1-cli-consul-0-key.pem")}
    # the CLI over HTTPS with a client certificate (verify_incoming); the server's certificate names its IP
    wait_for(lambda: run(consul, "kv", "put", "a", "1", env=env).returncode == 0, 20, what="kv put over HTTPS")
    assert run(consul, "kv", "get", "a", env=env).stdout == "1\n"
    # ports.http = -1: nothing listens on 8500
    r = run(consul, "members", "-http-addr", f"{net(1)}:8500")
    assert r.returncode == 1 and "connection refused" in r.stderr.lower()
    # plain HTTP on the HTTPS port: Go's answer
    r = run(consul, "members", env=dict(env, CONSUL_HTTP_ADDR=f"http://{net(1)}:8501"))
    assert r.returncode == 1 and "Client sent an HTTP request to an HTTPS server." in r.stderr
    # no client certificate: refused by verify_incoming
    r = run(consul, "members", env=dict(env, CONSUL_CLIENT_CERT="", CONSUL_CLIENT_KEY=""))
    assert r.returncode == 1 and ("remote error: tls: certificate required" in r.stderr
                                  or "remote error: tls: bad certificate" in r.stderr), r.stderr
    # the CA of another cluster: the server certificate is refused
    r = run(consul, "members", env=dict(env, CONSUL_CACERT=str(other / "consul-agent-ca.pem")))
    assert r.returncode == 1 and "x509: certificate signed by unknown authority" in r.stderr, r.stderr
    # the server certificate does not name the client agent's address: Go's hostname error
    c2env = dict(env, CONSUL_HTTP_ADDR=f"https://{net(2)}:8501")
    r = run(consul, "members", env=c2env)
    assert r.returncode == 1 and f"x509: certificate is valid for 127.0.0.1, not {net(2)}" in r.stderr, r.stderr
    # ... unless the CLI is told which name to expect (CONSUL_TLS_SERVER_NAME) or not to verify
    c2env["CONSUL_TLS_SERVER_NAME"] = "client.dc1.consul"
    # the client agent's RPC to the server runs over TLS (verify_outgoing, server.dc1.consul checked)
    wait_for(lambda: run(consul, "kv", "get", "a", env=c2env).stdout == "1\n", 20, what="kv get through the client agent")
    assert run(consul, "members", env=dict(c2env, CONSUL_TLS_SERVER_NAME="", CONSUL_HTTP_SSL_VERIFY="false")).returncode == 0
    # a client whose certificate comes from another CA gossips (no TLS in gossip) but its RPC is refused
    c3env = {"CONSUL_HTTP_ADDR": f"https://{net(3)}:8501", "CONSUL_CACERT": str(other / "consul-agent-ca.pem"),
             "CONSUL_CLIENT_CERT": str(other / "dc1-cli-consul-0.pem"),
             "CONSUL_CLIENT_KEY": str(other / "dc1-cli-consul-0-key.pem"), "CONSUL_TLS_SERVER_NAME": "client.dc1.consul"}
    wait_for(lambda: "n3" in run(consul, "members", env=env).stdout, 20, what="c3 in members")
    r = run(consul, "kv", "get", "a", env=c3env)
    assert r.returncode == 1 and "x509: certificate signed by unknown authority" in r.stderr, r.stderr
    assert c3.alive()


def test_consul_server_hostname_verified(consul, agents, net, tmp_path):
    """A server presenting a certificate without server.dc1.consul is refused by verify_server_hostname."""
    good = _pki(consul, tmp_path / "pki", "consul", "dc1", net(1))
    agents(consul, _consul_cfg(net, 1, good, server=True, kind="client"), "s1")  # a client cert on a server
    agents(consul, _consul_cfg(net, 2, good, server=False, kind="client", join=(1,)), "c2")
    env = {"CONSUL_HTTP_ADDR": f"https://{net(2)}:8501", "CONSUL_CACERT": str(good / "consul-agent-ca.pem"),
           "CONSUL_CLIENT_CERT": str(good / "dc1-cli-consul-0.pem"), "CONSUL_CLIENT_KEY": str(good / "dc1-cli-consul-0-key.pem"),
           "CONSUL_TLS_SERVER_NAME": "client.dc1.consul"}
    wait_for(lambda: "n1" in run(consul, "members", env=env).stdout, 20, what="s1 in members")
    r = run(consul, "kv", "put", "a", "1", env=env)
    assert r.returncode == 1
    assert "x509: certificate is valid for client.dc1.consul, localhost, not server.dc1.consul" in r.stderr, r.stderr


def _nomad_cfg(net, i, pki, *, server, kind, extra_tls=""):
    role = ("server {\n enabled = true\n bootstrap_expect = 1\n raft_multiplier = 1\n}" if server else
            f'client {{\n enabled = true\n servers = ["{net(1)}:4647"]\n}}')
    return f'''name = "{kind}{i}"
data_dir = "data"
bind_addr = "{net(i)}"
{role}
tls {{
  http = true
  rpc = true
  ca_file = "{pki}/nomad-agent-ca.pem"
  cert_file = "{pki}/global-{kind}-nomad.pem"
  key_file = "{pki}/global-{kind}-nomad-key.pem"
  verify_server_hostname = true
  verify_https_client = true
{extra_tls}}}
'''


def test_nomad_https_api_and_mutual_tls_rpc(nomad, agents, net, tmp_path):
    good = _pki(nomad, tmp_path / "good", "nomad", "global", net(1))
    other = _pki(nomad, tmp_path / "other", "nomad", "global", net(1))
    agents(nomad, _nomad_cfg(net, 1, good, server=True, kind="server"), "s1", product="nomad")
    agents(nomad, _nomad_cfg(net, 2, good, server=False, kind="client"), "c2", product="nomad")
    c3 = agents(nomad, _nomad_cfg(net, 3, other, server=False, kind="client"), "c3", product="nomad")
    env = {"NOMAD_ADDR": f"https://{net(1)}:4646", "NOMAD_CACERT": str(good / "nomad-agent-ca.pem"),
           "NOMAD_CLIENT_CERT": str(good / "global-cli-nomad.pem"), "NOMAD_CLIENT_KEY": str(good / "global-cli-nomad-key.pem")}
    # the client with a certificate of the cluster's CA registers over mutual TLS; the other one cannot
    wait_for(lambda: "ready" in run(nomad, "node", "status", env=env).stdout, 30, what="c2 ready")
    wait_for(lambda: "x509: certificate signed by unknown authority" in c3.log, 20, what="c3 refused")
    out = run(nomad, "node", "status", env=env).stdout
    assert "client2" in out and "client3" not in out
    # verify_https_client: the CLI needs a client certificate
    r = run(nomad, "node", "status", env=dict(env, NOMAD_CLIENT_CERT="", NOMAD_CLIENT_KEY=""))
    assert r.returncode == 1 and ("remote error: tls: certificate required" in r.stderr
                                  or "remote error: tls: bad certificate" in r.stderr), r.stderr
    # tls.http: the API is HTTPS only
    r = run(nomad, "node", "status", env=dict(env, NOMAD_ADDR=f"http://{net(1)}:4646"))
    assert r.returncode == 1 and "Client sent an HTTP request to an HTTPS server." in r.stderr
    r = run(nomad, "node", "status", env=dict(env, NOMAD_CACERT=str(other / "nomad-agent-ca.pem")))
    assert r.returncode == 1 and "x509: certificate signed by unknown authority" in r.stderr


def test_nomad_rpc_upgrade_mode_accepts_plain_clients(nomad, agents, net, tmp_path):
    """rpc_upgrade_mode: a TLS server still serves clients that do not speak TLS yet (staged migration)."""
    good = _pki(nomad, tmp_path / "pki", "nomad", "global", net(1))
    agents(nomad, _nomad_cfg(net, 1, good, server=True, kind="server", extra_tls="  rpc_upgrade_mode = true\n"),
           "s1", product="nomad")
    agents(nomad, f'name = "plain2"\ndata_dir = "data"\nbind_addr = "{net(2)}"\n'
                  f'client {{\n enabled = true\n servers = ["{net(1)}:4647"]\n}}\n', "c2", product="nomad")
    agents(nomad, _nomad_cfg(net, 3, good, server=False, kind="client"), "c3", product="nomad")
    env = {"NOMAD_ADDR": f"https://{net(1)}:4646", "NOMAD_CACERT": str(good / "nomad-agent-ca.pem"),
           "NOMAD_CLIENT_CERT": str(good / "global-cli-nomad.pem"), "NOMAD_CLIENT_KEY": str(good / "global-cli-nomad-key.pem")}
    wait_for(lambda: run(nomad, "node", "status", env=env).stdout.count("ready") == 2, 30, what="both clients ready")


def test_nomad_https_registers_https_checks_in_consul(consul, nomad, agents, net, tmp_path):
    """With tls.http Nomad's HTTP check in Consul is https (verification skipped, as Nomad registers it) and passes."""
    from .conftest import http
    pki = _pki(nomad, tmp_path / "pki", "nomad", "global", net(1))
    agents(consul, f'node_name = "c"\ndata_dir = "data"\nserver = true\nbootstrap_expect = 1\nbind_addr = "{net(9)}"\n'
                   f'client_addr = "{net(9)}"\nperformance {{ raft_multiplier = 1 }}\n', "consul")
    cfg = _nomad_cfg(net, 1, pki, server=True, kind="server").replace("  verify_https_client = true\n", "")
    agents(nomad, cfg + f'consul {{\n  address = "{net(9)}:8500"\n}}\n', "s1", product="nomad")
    c = f"{net(9)}:8500"
    rows = wait_for(lambda: (lambda r: r if len(r) == 3 else None)(http(c, "/v1/health/service/nomad?passing")[1]), 40,
                    what="nomad server checks passing")
    checks = {ch["Name"]: ch for r in rows for ch in r["Checks"]}
    assert checks["Nomad Server HTTP Check"]["Status"] == "passing"
    assert f"https://{net(1)}:4646/v1/agent/health?type=server" in checks["Nomad Server HTTP Check"]["Output"]

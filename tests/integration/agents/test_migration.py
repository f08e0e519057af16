"""Staged migrations an operator runs on a live cluster: TLS switched on in steps (both listeners, then
verify_incoming), Nomad's rpc_upgrade_mode, the ACL default policy, and what SIGHUP reloads."""

from __future__ import annotations

import signal

import pytest

from .conftest import http, run, wait_for
from .test_tls import _pki

pytest.importorskip("cryptography")


def _tls_block(pki, kind, verify_incoming, verify_outgoing=True):
    return f'''tls {{
  defaults {{
    ca_file = "{pki}/consul-agent-ca.pem"
    cert_file = "{pki}/dc1-{kind}-consul-0.pem"
    key_file = "{pki}/dc1-{kind}-consul-0-key.pem"
    verify_incoming = {str(verify_incoming).lower()}
    verify_outgoing = {str(verify_outgoing).lower()}
  }}
  internal_rpc {{ verify_server_hostname = true }}
}}
'''


def _base(net, i, *, server, join=()):
    return "\n".join([f'node_name = "n{i}"', 'data_dir = "data"', f"server = {str(server).lower()}",
                      f'bind_addr = "{net(i)}"', f'client_addr = "{net(i)}"',
                      "retry_join = [" + ", ".join(f'"{net(j)}"' for j in join) + "]", 'retry_interval = "1s"',
                      "performance { raft_multiplier = 1 }", *(["bootstrap_expect = 1"] if server else [])]) + "\n"


def test_consul_tls_turned_on_in_steps(consul, agents, net, tmp_path):
    """Step 1: TLS with verify_incoming = false and both HTTP and HTTPS: agents not yet migrated keep working.
    Step 2 (SIGHUP): verify_incoming = true: plain RPC and HTTPS without a client certificate are refused."""
    pki = _pki(consul, tmp_path / "pki", "consul", "dc1", net(1))
    s1 = agents(consul, _base(net, 1, server=True) + "ports {\n  http = 8500\n  https = 8501\n}\n"
                + _tls_block(pki, "server", False), "s1")
    agents(consul, _base(net, 2, server=False, join=(1,)), "c2")  # not migrated yet: no TLS at all
    agents(consul, _base(net, 3, server=False, join=(1,)) + _tls_block(pki, "client", False), "c3")
    https = {"CONSUL_HTTP_ADDR": f"https://{net(1)}:8501", "CONSUL_CACERT": str(pki / "consul-agent-ca.pem")}
    # both listeners; HTTPS needs no client certificate yet
    wait_for(lambda: http(f"{net(1)}:8500", "/v1/status/leader")[1], 15, what="leader")
    wait_for(lambda: run(consul, "kv", "put", "k", "https", env=https).returncode == 0, 10, what="HTTPS write")
    # the plain client and the TLS client both reach the server's RPC port
    for i in (2, 3):
        wait_for(lambda i=i: http(f"{net(i)}:8500", "/v1/kv/k?raw")[:2] == (200, "https"), 20, what=f"read via c{i}")

    cfg = s1.workdir / "config" / "agent.hcl"
    cfg.write_text(cfg.read_text().replace("verify_incoming = false", "verify_incoming = true"))
    s1.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "Reloaded configuration" in s1.log, 10, what="reload")
    # the TLS client keeps working; the plain one is refused by the server
    assert http(f"{net(3)}:8500", "/v1/kv/k", "PUT", b"after")[:2] == (200, True)
    st, body = http(f"{net(2)}:8500", "/v1/kv/k", "PUT", b"plain")
    assert st == 500 and "No known Consul servers" in body
    wait_for(lambda: "Non-TLS connection attempted with VerifyIncoming set" in s1.log, 5, what="refusal logged")
    r = run(consul, "kv", "get", "k", env=https)
    assert r.returncode == 1 and "remote error: tls:" in r.stderr, r.stderr
    ok = dict(https, CONSUL_CLIENT_CERT=str(pki / "dc1-cli-consul-0.pem"), CONSUL_CLIENT_KEY=str(pki / "dc1-cli-consul-0-key.pem"))
    assert run(consul, "kv", "get", "k", env=ok).stdout == "after\n"


def test_sighup_reloads_certificate_files(consul, agents, net, tmp_path):
    """New certificate files (a new CA) are picked up on SIGHUP without a restart."""
    old = _pki(consul, tmp_path / "old", "consul", "dc1", net(1))
    new = _pki(consul, tmp_path / "new", "consul", "dc1", net(1))
    live = tmp_path / "live"
    live.mkdir()
    for f in ("consul-agent-ca.pem", "dc1-server-consul-0.pem", "dc1-server-consul-0-key.pem"):
        (live / f).write_bytes((old / f).read_bytes())
    s1 = agents(consul, _base(net, 1, server=True) + "ports { https = 8501 }\n" + _tls_block(live, "server", False), "s1")
    env = {"CONSUL_HTTP_ADDR": f"https://{net(1)}:8501", "CONSUL_CACERT": str(old / "consul-agent-ca.pem")}
    wait_for(lambda: run(consul, "members", env=env).returncode == 0, 15, what="HTTPS with the old CA")
    for f in ("consul-agent-ca.pem", "dc1-server-consul-0.pem", "dc1-server-consul-0-key.pem"):
        (live / f).write_bytes((new / f).read_bytes())
    assert run(consul, "members", env=env).returncode == 0  # not before the reload
    s1.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "Reloaded configuration" in s1.log, 10, what="reload")
    r = run(consul, "members", env=env)
    assert r.returncode == 1 and "x509: certificate signed by unknown authority" in r.stderr
    assert run(consul, "members", env=dict(env, CONSUL_CACERT=str(new / "consul-agent-ca.pem"))).returncode == 0


def test_consul_acl_default_policy_allow_then_deny(consul, agents, net):
    """ACLs on with default_policy = allow (nothing breaks), bootstrap, then deny: acl.default_policy is not
    among Consul's reloadable settings, so a SIGHUP keeps allow (with a warning) and the restart applies deny."""
    acl_cfg = 'acl {\n  enabled = true\n  default_policy = "allow"\n}\n'
    s1 = agents(consul, _base(net, 1, server=True) + acl_cfg, "s1")
    a = f"{net(1)}:8500"
    wait_for(lambda: http(a, "/v1/kv/k", "PUT", b"v")[:2] == (200, True), 15, what="anonymous write under allow")
    boot = wait_for(lambda: (lambda r: r[1] if r[0] == 200 else None)(http(a, "/v1/acl/bootstrap", "PUT")), 10)
    cfg = s1.workdir / "config" / "agent.hcl"
    cfg.write_text(cfg.read_text().replace('default_policy = "allow"', 'default_policy = "deny"'))
    s1.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "acl.enabled and acl.default_policy are not reloadable" in s1.log, 10, what="reload warning")
    assert http(a, "/v1/kv/k?raw")[:2] == (200, "v")
    s1.stop()
    s1.start()
    wait_for(lambda: http(a, "/v1/status/leader")[1], 15, what="leader after restart")
    st, body = wait_for(lambda: (lambda r: r if r[0] == 403 else None)(http(a, "/v1/kv/k?raw")), 10, what="deny")
    assert "Permission denied: anonymous token lacks permission 'key:read'" in body
    import urllib.request
    req = urllib.request.Request(f"http://{a}/v1/kv/k?raw", headers={"X-Consul-Token": boot["SecretID"]})
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.read() == b"v"


def test_nomad_rpc_upgrade_mode_switched_off_on_reload(nomad, agents, net, tmp_path):
    """Nomad's staged migration: rpc_upgrade_mode while clients move to TLS, then removed with a SIGHUP."""
    from .test_tls import _nomad_cfg
    pki = _pki(nomad, tmp_path / "pki", "nomad", "global", net(1))
    s1 = agents(nomad, _nomad_cfg(net, 1, pki, server=True, kind="server", extra_tls="  rpc_upgrade_mode = true\n"),
                "s1", product="nomad")
    plain = agents(nomad, f'name = "plain2"\ndata_dir = "data"\nbind_addr = "{net(2)}"\n'
                          f'client {{\n enabled = true\n servers = ["{net(1)}:4647"]\n}}\n', "c2", product="nomad")
    env = {"NOMAD_ADDR": f"https://{net(1)}:4646", "NOMAD_CACERT": str(pki / "nomad-agent-ca.pem"),
           "NOMAD_CLIENT_CERT": str(pki / "global-cli-nomad.pem"), "NOMAD_CLIENT_KEY": str(pki / "global-cli-nomad-key.pem")}
    wait_for(lambda: "ready" in run(nomad, "node", "status", env=env).stdout, 30, what="plain client ready")
    cfg = s1.workdir / "config" / "agent.hcl"
    cfg.write_text(cfg.read_text().replace("  rpc_upgrade_mode = true\n", ""))
    s1.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "Reloaded configuration" in s1.log, 10, what="reload")
    wait_for(lambda: "Non-TLS connection attempted" in s1.log, 20, what="plain RPC refused after the reload")
    assert plain.alive()

"""ACLs for real: bootstrap once, policies and tokens through the CLIs and the HTTP API, default deny,
policy scopes, tokens from the headers and the CLIs' variables, errors as the products word them."""

from __future__ import annotations

import json

from .conftest import http, run, wait_for


def _consul_cfg(net, i, *, server, join=(), default_policy="deny", extra=""):
    return "\n".join([
        f'node_name = "n{i}"', 'data_dir = "data"', f"server = {str(server).lower()}", f'bind_addr = "{net(i)}"',
        f'client_addr = "{net(i)}"', "retry_join = [" + ", ".join(f'"{net(j)}"' for j in join) + "]",
        'retry_interval = "1s"', "performance { raft_multiplier = 1 }", *(["bootstrap_expect = 1"] if server else []),
        f'acl {{\n  enabled = true\n  default_policy = "{default_policy}"\n{extra}}}']) + "\n"


def _req(addr, path, method="GET", body=None, token=None, bearer=False):
    import urllib.error
    import urllib.request
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(f"http://{addr}{path}", data=data, method=method)
    if token:
        req.add_header(*(("Authorization", f"Bearer {token}") if bearer else ("X-Consul-Token", token)))
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            raw, status, hdrs = r.read(), r.status, dict(r.headers)
    except urllib.error.HTTPError as e:
        raw, status, hdrs = e.read(), e.code, dict(e.headers)
    try:
        return status, json.loads(raw), hdrs
    except ValueError:
        return status, raw.decode(), hdrs


def test_consul_acl_bootstrap_policies_tokens_default_deny(consul, agents, net, tmp_path):
    agents(consul, _consul_cfg(net, 1, server=True), "s1")
    agents(consul, _consul_cfg(net, 2, server=False, join=(1,)), "c2")
    s1, c2 = f"{net(1)}:8500", f"{net(2)}:8500"
    wait_for(lambda: http(s1, "/v1/status/leader")[1], 15, what="leader")

    # default deny: the anonymous token may not write or read KV
    st, body, _ = _req(s1, "/v1/kv/app/x", "PUT", b"1")
    assert st == 403 and body.startswith("Permission denied: anonymous token lacks permission 'key:write' on \"app/x\"")
    # bootstrap once (CLI), the second attempt is refused with the reset index
    env = {"CONSUL_HTTP_ADDR": s1}
    r = wait_for(lambda: (lambda r: r if r.returncode == 0 else None)(run(consul, "acl", "bootstrap", "-format=json", env=env)),
                 15, what="bootstrap")
    boot = json.loads(r.stdout)
    assert boot["Description"] == "Bootstrap Token (Global Management)"
    assert boot["Policies"] == [{"ID": "00000000-0000-0000-0000-000000000001", "Name": "global-management"}]
    st, body, _ = _req(s1, "/v1/acl/bootstrap", "PUT")
    assert st == 403 and body == f"Permission denied: ACL bootstrap no longer allowed (reset index: {boot['CreateIndex']})"
    r = run(consul, "acl", "bootstrap", env=env)
    assert r.returncode == 1 and "ACL bootstrap no longer allowed" in r.stderr

    # a policy and a token through the CLI with CONSUL_HTTP_TOKEN
    mgmt = dict(env, CONSUL_HTTP_TOKEN=boot["SecretID"])
    rules = tmp_path / "app.hcl"
    rules.write_text('key_prefix "app/" {\n  policy = "write"\n}\nnode_prefix "n1" {\n  policy = "read"\n}\n')
    r = run(consul, "acl", "policy", "create", "-name", "app", "-rules", f"@{rules}", env=mgmt)
    assert r.returncode == 0 and "Name:         app" in r.stdout, r.stderr
    r = run(consul, "acl", "token", "create", "-description", "app token", "-policy-name", "app", "-format=json", env=mgmt)
    assert r.returncode == 0, r.stderr
    tok = json.loads(r.stdout)
    assert [p["Name"] for p in tok["Policies"]] == ["app"]

    # the policy's scope holds, on the server and through the client agent (resolution over RPC)
    for addr in (s1, c2):
        assert _req(addr, "/v1/kv/app/x", "PUT", b"1", token=tok["SecretID"])[:2] == (200, True)
        st, body, _ = _req(addr, "/v1/kv/other", "PUT", b"1", token=tok["SecretID"], bearer=True)
        assert st == 403 and body == (f"Permission denied: token with AccessorID '{tok['AccessorID']}' lacks permission "
                                      "'key:write' on \"other\"")
    assert run(consul, "kv", "get", "app/x", env=dict(env, CONSUL_HTTP_TOKEN=tok["SecretID"])).stdout == "1\n"
    r = run(consul, "kv", "get", "app/x", env=env)
    assert r.returncode == 1 and "403" in r.stderr and "Permission denied" in r.stderr
    # lists are filtered, not denied
    wait_for(lambda: len(_req(s1, "/v1/catalog/nodes", token=boot["SecretID"])[1]) == 2, 20, what="two nodes")
    st, nodes, hdrs = _req(s1, "/v1/catalog/nodes", token=tok["SecretID"])
    assert st == 200 and [n["Node"] for n in nodes] == ["n1"] and hdrs.get("X-Consul-Results-Filtered-By-ACLs") == "true"
    assert _req(s1, "/v1/catalog/nodes")[1] == []
    # operator endpoints need operator rules; management may do everything
    assert _req(s1, "/v1/operator/raft/configuration", token=tok["SecretID"])[0] == 403
    assert _req(s1, "/v1/operator/raft/configuration", token=boot["SecretID"])[0] == 200
    # unknown token, token self, policy CRUD, deleting the token revokes it
    st, body, _ = _req(s1, "/v1/kv/app/x", token="00000000-1111-2222-3333-444444444444")
    assert (st, body) == (403, "ACL not found")
    st, me, _ = _req(s1, "/v1/acl/token/self", token=tok["SecretID"])
    assert st == 200 and me["AccessorID"] == tok["AccessorID"]
    st, pols, _ = _req(s1, "/v1/acl/policies", token=boot["SecretID"])
    assert sorted(p["Name"] for p in pols) == ["app", "global-management"] and "Rules" not in pols[0]
    app = next(p for p in pols if p["Name"] == "app")
    st, upd, _ = _req(s1, f"/v1/acl/policy/{app['ID']}", "PUT", {"Name": "app", "Rules": 'key_prefix "" { policy = "read" }'},
                      token=boot["SecretID"])
    assert st == 200 and upd["ModifyIndex"] > app["ModifyIndex"]
    assert _req(s1, "/v1/kv/app/x", "PUT", b"2", token=tok["SecretID"])[0] == 403  # write is gone
    st, body, _ = _req(s1, "/v1/acl/policy", "PUT", {"Name": "bad", "Rules": 'key_prefix "" { policy = "maybe" }'},
                       token=boot["SecretID"])
    assert st == 400 and body.startswith("Invalid Policy: failed to parse rules")
    assert _req(s1, "/v1/acl/policy", "PUT", {"Name": "x"}, token=tok["SecretID"])[0] == 403  # acl:write needed
    assert _req(s1, f"/v1/acl/token/{tok['AccessorID']}", "DELETE", token=boot["SecretID"])[:2] == (200, True)
    assert _req(s1, "/v1/kv/app/x", token=tok["SecretID"])[:2] == (403, "ACL not found")


def test_consul_initial_management_token_and_acl_disabled(consul, agents, net):
    secret = "5b1a4b4e-4f0c-4d6e-9c43-0a0d3f4c2a11"
    agents(consul, _consul_cfg(net, 1, server=True, extra=f'  tokens {{\n    initial_management = "{secret}"\n  }}\n'), "s1")
    s1 = f"{net(1)}:8500"
    wait_for(lambda: _req(s1, "/v1/acl/token/self", token=secret)[0] == 200, 15, what="initial management token")
    assert _req(s1, "/v1/kv/k", "PUT", b"v", token=secret)[:2] == (200, True)
    st, body, _ = _req(s1, "/v1/acl/bootstrap", "PUT")
    assert st == 403 and "ACL bootstrap no longer allowed" in body
    agents(consul, f'node_name = "n2"\ndata_dir = "data"\nserver = true\nbootstrap_expect = 1\nbind_addr = "{net(2)}"\n'
                   f'client_addr = "{net(2)}"\nperformance {{ raft_multiplier = 1 }}\n', "s2")
    s2 = f"{net(2)}:8500"
    wait_for(lambda: http(s2, "/v1/status/leader")[1], 15, what="leader s2")
    assert _req(s2, "/v1/acl/bootstrap", "PUT")[:2] == (401, "ACL support disabled")
    assert _req(s2, "/v1/kv/k", "PUT", b"v", token="whatever")[:2] == (200, True)  # no ACLs: any token works


def _nreq(addr, path, method="GET", body=None, token=None):
    import urllib.error
    import urllib.request
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://{addr}{path}", data=data, method=method)
    if token:
        req.add_header("X-Nomad-Token", token)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            raw, status = r.read(), r.status
    except urllib.error.HTTPError as e:
        raw, status = e.read(), e.code
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode()


def test_nomad_acl_bootstrap_policies_tokens(nomad, agents, net, tmp_path):
    agents(nomad, f'name = "s1"\ndata_dir = "data"\nbind_addr = "{net(1)}"\n'
                  "server {\n enabled = true\n bootstrap_expect = 1\n raft_multiplier = 1\n}\nacl {\n enabled = true\n}\n",
           "s1", product="nomad")
    agents(nomad, f'name = "c2"\ndata_dir = "data"\nbind_addr = "{net(2)}"\n'
                  f'client {{\n enabled = true\n servers = ["{net(1)}:4647"]\n}}\nacl {{\n enabled = true\n}}\n',
           "c2", product="nomad")
    s1, c2 = f"{net(1)}:4646", f"{net(2)}:4646"
    wait_for(lambda: _nreq(s1, "/v1/status/leader")[1], 15, what="leader")
    # anonymous requests are denied (no anonymous policy), on the server and on the client agent
    for addr in (s1, c2):
        assert _nreq(addr, "/v1/jobs") == (403, "Permission denied")
    env = {"NOMAD_ADDR": f"http://{s1}"}
    r = wait_for(lambda: (lambda r: r if r.returncode == 0 else None)(run(nomad, "acl", "bootstrap", "-json", env=env)),
                 15, what="bootstrap")
    boot = json.loads(r.stdout)
    assert boot["Type"] == "management" and boot["Name"] == "Bootstrap Token"
    assert _nreq(s1, "/v1/acl/bootstrap", "POST", {}) == (400, f"ACL bootstrap already done (reset index: {boot['CreateIndex']})")
    r = run(nomad, "acl", "bootstrap", env=env)
    assert r.returncode == 1 and "ACL bootstrap already done" in r.stderr
    mgmt = dict(env, NOMAD_TOKEN=boot["SecretID"])
    assert run(nomad, "node", "status", env=mgmt).returncode == 0

    # a read-only policy: job list allowed, job submit denied, node read allowed, operator denied
    pol = tmp_path / "ro.hcl"
    pol.write_text('namespace "default" {\n  policy = "read"\n}\nnode {\n  policy = "read"\n}\n')
    r = run(nomad, "acl", "policy", "apply", "-description", "read only", "ro", str(pol), env=mgmt)
    assert r.returncode == 0 and r.stdout.strip() == 'Successfully wrote "ro" ACL policy!', r.stderr
    r = run(nomad, "acl", "token", "create", "-name", "reader", "-type", "client", "-policy", "ro", env=mgmt)
    assert r.returncode == 0 and "Type         = client" in r.stdout and "Policies     = ro" in r.stdout, r.stdout
    secret = next(line.split("=", 1)[1].strip() for line in r.stdout.splitlines() if line.startswith("Secret ID"))
    for addr in (s1, c2):
        assert _nreq(addr, "/v1/jobs", token=secret) == (200, [])
        assert _nreq(addr, "/v1/jobs", "POST", {"Job": {"ID": "x"}}, token=secret) == (403, "Permission denied")
        assert _nreq(addr, "/v1/jobs?namespace=other", token=secret) == (403, "Permission denied")
        assert _nreq(addr, "/v1/nodes", token=secret)[0] == 200
        assert _nreq(addr, "/v1/operator/raft/configuration", token=secret) == (403, "Permission denied")
    assert run(nomad, "job", "status", env=dict(env, NOMAD_TOKEN=secret)).returncode == 0
    assert _nreq(s1, "/v1/jobs", token="00000000-1111-2222-3333-444444444444") == (403, "ACL token not found")
    st, me = _nreq(s1, "/v1/acl/token/self", token=secret)
    assert st == 200 and me["Policies"] == ["ro"] and me["Type"] == "client"
    # token and policy management needs a management token; a client token without policies is refused
    assert _nreq(s1, "/v1/acl/policies", token=secret) == (403, "Permission denied")
    assert _nreq(s1, "/v1/acl/token", "POST", {"Type": "client"}, token=boot["SecretID"])[0] == 400
    # an anonymous policy opens what it grants to requests without a token
    assert _nreq(s1, "/v1/acl/policy/anonymous", "POST", {"Name": "anonymous", "Rules": 'namespace "*" { policy = "read" }'},
                 token=boot["SecretID"])[0] == 200
    assert _nreq(s1, "/v1/jobs") == (200, [])
    assert _nreq(s1, f"/v1/acl/token/{me['AccessorID']}", "DELETE", token=boot["SecretID"])[0] == 200
    assert _nreq(s1, "/v1/nodes", token=secret) == (403, "ACL token not found")


def test_consul_agent_token_gates_anti_entropy(consul, agents, net):
    """Under default deny the agent syncs its services only with an agent token allowed to write them
    (acl.tokens.agent, reloadable)."""
    import signal
    mgmt = "9d3f1a57-3b7e-4e0c-8c1e-5f5a1f7b2c10"
    agent_secret = "1e2d3c4b-5a69-4788-9a0b-c1d2e3f4a5b6"
    extra = f'  enable_token_persistence = true\n  tokens {{\n    initial_management = "{mgmt}"\n  }}\n'
    s1 = agents(consul, _consul_cfg(net, 1, server=True, extra=extra) + 'service {\n  name = "web"\n  port = 80\n}\n', "s1")
    a = f"{net(1)}:8500"
    wait_for(lambda: "Service registration blocked by ACLs: service=web" in s1.log, 30, what="blocked sync")
    assert "web" not in _req(a, "/v1/catalog/services", token=mgmt)[1]
    pol = _req(a, "/v1/acl/policy", "PUT", {"Name": "agent", "Rules": 'node_prefix "" { policy = "write" }\n'
                                                                   'service_prefix "" { policy = "write" }'}, token=mgmt)[1]
    assert _req(a, "/v1/acl/token", "PUT", {"SecretID": agent_secret, "Policies": [{"ID": pol["ID"]}]}, token=mgmt)[0] == 200
    cfg = s1.workdir / "config" / "agent.hcl"
    cfg.write_text(cfg.read_text().replace("tokens {", f'tokens {{\n    agent = "{agent_secret}"'))
    s1.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "web" in _req(a, "/v1/catalog/services", token=mgmt)[1], 30, what="web synced with the agent token")
    # consul acl set-agent-token: the default token for requests without one, persisted across a restart
    assert _req(a, "/v1/kv/k")[0] == 403
    r = run(consul, "acl", "set-agent-token", "default", mgmt, env={"CONSUL_HTTP_ADDR": a, "CONSUL_HTTP_TOKEN": mgmt})
    assert r.returncode == 0 and r.stdout.strip() == 'ACL token "default" set successfully', r.stderr
    assert _req(a, "/v1/kv/k", "PUT", b"v")[:2] == (200, True)
    assert json.loads((s1.workdir / "data" / "acl-tokens.json").read_text()) == {"default": mgmt}
    s1.stop()
    s1.start()
    wait_for(lambda: _req(a, "/v1/kv/k?raw")[:2] == (200, "v"), 20, what="persisted default token after restart")
    assert _req(a, "/v1/agent/token/replication", "PUT", {"Token": "x"}, token=mgmt)[0] == 404

"""`consul validate` / `nomad config validate` and agent start refuse bad configuration, naming the key."""

from __future__ import annotations

import json
import time
from pathlib import Path

from .conftest import run, wait_for

GOOD_CONSUL = '''
datacenter = "dc1"
data_dir = "/opt/consul"
server = true
bootstrap_expect = 3
bind_addr = "{{ GetInterfaceIP \\"lo\\" }}"
client_addr = "127.0.0.1"
retry_join = ["provider=azure tag_name=consul tag_value=srv subscription_id=00000000-0000-0000-0000-000000000000"]
encrypt = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s="
leave_on_terminate = true
performance { raft_multiplier = 1 }
autopilot {
  server_stabilization_time = "10s"
  cleanup_dead_servers = true
}
ports { http = 8500 }
node_meta { pool = "servers" }
'''


def test_consul_validate_good_dir_and_json(consul, tmp_path):
    d = tmp_path / "consul.d"
    d.mkdir()
    (d / "10-base.hcl").write_text(GOOD_CONSUL)
    (d / "20-extra.json").write_text(json.dumps({"log_level": "info", "ui_config": {"enabled": True}}))
    (d / "README.txt").write_text("ignored: not .hcl/.json")
    r = run(consul, "validate", str(d))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "Configuration is valid!"
    assert run(consul, "validate", "-quiet", str(d)).stdout == ""


def test_consul_validate_rejects_and_names_key(consul, tmp_path):
    cases = {
        "unknown": ('data_dir = "/x"\nserver_join { retry_join = ["a"] }\n', "server_join"),
        "type": ('data_dir = "/x"\nbootstrap_expect = "three"\nserver = true\n', "bootstrap_expect"),
        "nested": ('data_dir = "/x"\nports { htpp = 1 }\n', "ports.htpp"),
        "client_expect": ('data_dir = "/x"\nserver = false\nbootstrap_expect = 3\n', "bootstrap_expect"),
        "bad_key": ('data_dir = "/x"\nencrypt = "short"\n', "encrypt"),
        "duration": ('data_dir = "/x"\nautopilot { server_stabilization_time = "ten" }\n', "autopilot.server_stabilization_time"),
        "syntax": ('data_dir = "/x"\nports {\n', "failed to parse"),
    }
    for name, (text, needle) in cases.items():
        f = tmp_path / f"{name}.hcl"
        f.write_text(text)
        r = run(consul, "validate", str(f))
        assert r.returncode == 1, name
        assert r.stderr.startswith("Config validation failed: "), (name, r.stderr)
        assert needle in r.stderr, (name, r.stderr)
        if name in ("unknown", "client_expect", "syntax"):
            # the agent refuses to start with the same configuration
            a = run(consul, "agent", "-config-file", str(f), timeout=20)
            assert a.returncode == 1 and needle in a.stderr, (name, a.stderr)
    assert run(consul, "validate").stderr.strip() == "Must specify at least one config file or directory"


def test_later_files_override_earlier(consul, tmp_path):
    d = tmp_path / "c"
    d.mkdir()
    (d / "a.hcl").write_text('data_dir = "/x"\nserver = false\n')
    (d / "b.json").write_text(json.dumps({"server": True, "bootstrap_expect": 1}))
    assert run(consul, "validate", str(d)).returncode == 0  # b.json makes it a server
    (d / "c.hcl").write_text("server = false\n")
    r = run(consul, "validate", str(d))
    assert r.returncode == 1 and "bootstrap_expect" in r.stderr


def test_nomad_config_validate(nomad, tmp_path):
    good = tmp_path / "good.hcl"
    good.write_text('''
data_dir = "/opt/nomad"
region = "global"
datacenter = "dc1"
bind_addr = "0.0.0.0"
advertise { http = "{{ GetInterfaceIP \\"lo\\" }}" }
server {
  enabled = true
  bootstrap_expect = 3
  server_join { retry_join = ["provider=azure tag_name=nomad tag_value=srv subscription_id=s"] }
}
client {
  enabled = false
}
plugin "raw_exec" {
  config { enabled = true }
}
telemetry { publish_allocation_metrics = true }
''')
    r = run(nomad, "config", "validate", str(good))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "Configuration is valid!"
    bad = {
        "unknown": ('data_dir = "/x"\nserver { enabled = true\n bootstrap_expct = 3 }\n', "bootstrap_expct"),
        "type": ('data_dir = "/x"\nserver { enabled = "maybe" }\n', "server.enabled"),
        "client_expect": ('data_dir = "/x"\nserver { enabled = false\n bootstrap_expect = 3 }\nclient { enabled = true }\n', "bootstrap_expect"),
        "nothing": ('data_dir = "/x"\n', "Must specify either server, client or dev mode"),
    }
    for name, (text, needle) in bad.items():
        f = tmp_path / f"{name}.hcl"
        f.write_text(text)
        r = run(nomad, "config", "validate", str(f))
        assert r.returncode == 1, name
        assert needle in r.stderr and "Configuration is invalid" in r.stderr, (name, r.stderr)
        if name in ("unknown", "client_expect"):
            a = run(nomad, "agent", "-config", str(f), timeout=20)
            assert a.returncode == 1 and needle in a.stderr, (name, a.stderr)


def test_keygen_formats(consul, nomad):
    import base64
    for exe, args in ((consul, ["keygen"]), (nomad, ["operator", "gossip", "keyring", "generate"])):
        r = run(exe, *args)
        key = r.stdout.strip()
        assert r.returncode == 0 and len(key) == 44 and key.endswith("=")
        assert len(base64.b64decode(key)) == 32


def test_consul_validate_temp_file_needs_config_format(consul, tmp_path):
    """Ansible's `validate:` passes a temp file without extension: like the real CLI, -config-format is needed."""
    f = tmp_path / "tmpXYZ"
    f.write_text(GOOD_CONSUL)
    r = run(consul, "validate", str(f))
    assert r.returncode == 1 and "-config-format" in r.stderr
    r = run(consul, "validate", "-config-format=hcl", str(f))
    assert r.returncode == 0 and r.stdout.strip() == "Configuration is valid!"


UNSUPPORTED_CONSUL = {
    "tls.grpc": 'tls { grpc { ca_file = "/etc/ca.pem" } }\n',
    "tls.defaults.tls_min_version": 'tls { defaults { tls_min_version = "TLSv1_3" } }\n',
    "acl.down_policy": 'acl {\n  enabled = true\n  down_policy = "deny"\n}\n',
    "verify_incoming": "verify_incoming = true\n",
    "connect.ca_config": 'connect {\n  enabled = true\n  ca_config { leaf_cert_ttl = "1h" }\n}\n',
    "ports.dns": "ports { dns = 8600 }\n",
    "connect.enable_mesh_gateway_wan_federation": "connect { enable_mesh_gateway_wan_federation = true }\n",
    "dns_config": "dns_config { allow_stale = true }\n",
}


def test_unsupported_consul_settings_refused_by_validate_and_at_start(consul, tmp_path):
    """A documented key the stand-in does not implement: `consul validate` says so, the agent refuses to start,
    both naming the key -- never accepted and silently ignored."""
    for key, text in UNSUPPORTED_CONSUL.items():
        f = tmp_path / f"{key}.hcl"
        f.write_text('data_dir = "/tmp/x"\nserver = true\nbootstrap_expect = 1\n' + text)
        r = run(consul, "validate", str(f))
        assert r.returncode == 1, key
        assert f"{key}: " in r.stderr and "not implemented by the sandbox consul stand-in" in r.stderr, (key, r.stderr)
    f = tmp_path / "connect.ca_config.hcl"
    a = run(consul, "agent", "-config-file", str(f), timeout=20)
    assert a.returncode == 1 and "connect.ca_config: not implemented by the sandbox consul stand-in" in a.stderr
    assert "Traceback" not in a.stderr
    # implemented TLS settings are still checked at start: HTTPS needs a certificate
    f = tmp_path / "https.hcl"
    f.write_text(f'data_dir = "{tmp_path}/d"\nserver = true\nbootstrap_expect = 1\nports {{ https = 8501 }}\n')
    a = run(consul, "agent", "-config-file", str(f), timeout=20)
    assert a.returncode == 1 and "ports.https is set but no certificate is configured" in a.stdout + a.stderr
    # the values that switch an unimplemented feature off are implemented
    f = tmp_path / "off.hcl"
    f.write_text('data_dir = "/tmp/x"\nports {\n  dns = -1\n  grpc = -1\n  https = -1\n}\nconnect { enabled = false }\n')
    assert run(consul, "validate", str(f)).returncode == 0


def test_unsupported_nomad_settings_refused(nomad, tmp_path):
    cases = {"tls.tls_min_version": 'tls { tls_min_version = "tls13" }\n', "acl.token_ttl": 'acl { token_ttl = "30s" }\n',
             "vault": "vault { enabled = true }\n",
             "plugin.docker": 'plugin "docker" { config { allow_privileged = true } }\n',
             "client.host_volume": 'client { host_volume "d" { path = "/d" } }\n'}
    for key, text in cases.items():
        f = tmp_path / f"{key}.hcl"
        f.write_text('data_dir = "/tmp/x"\nserver { enabled = true }\n' + text)
        r = run(nomad, "config", "validate", str(f))
        assert r.returncode == 1 and f"{key}: not implemented by the sandbox nomad stand-in" in r.stderr, (key, r.stderr)
    a = run(nomad, "agent", "-config", str(tmp_path / "vault.hcl"), timeout=20)
    assert a.returncode == 1 and "vault: not implemented by the sandbox nomad stand-in" in a.stderr


def test_http_port_disabled(consul, agents, net):
    """ports { http = -1 } (the documented HTTPS-only setting) disables the HTTP API instead of crashing."""
    import socket
    a = agents(consul, f'data_dir = "data"\nserver = true\nbootstrap_expect = 1\nbind_addr = "{net(1)}"\n'
                       f'client_addr = "{net(1)}"\nports {{\n  http = -1\n}}\n', "nohttp")
    wait_for(lambda: "HTTP API disabled (ports.http = -1)" in a.log, 15, what="agent up without HTTP")
    time.sleep(0.5)
    assert a.alive() and "Traceback" not in a.log
    with socket.socket() as s:
        assert s.connect_ex((net(1), 8500)) != 0


def test_what_the_roles_render_is_implemented(consul, nomad, tmp_path):
    """The collection's templates, rendered for a server and a client, pass the stand-ins' validation: every
    setting the roles write is implemented, not refused."""
    import jinja2
    root = Path(__file__).resolve().parents[3] / "roles"
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    env.filters.update(to_json=json.dumps, bool=bool, int=int, string=str)
    spec = {"cluster": "c", "consul_datacenter": "dc1", "nomad_region": "global", "server_count": 3}
    common = {"hashistack_cluster": spec, "consul_data_dir": "/opt/consul", "consul_log_level": "INFO",
              "consul_bind_addr": "{{ GetPrivateIP }}", "consul_client_addr": "127.0.0.1", "consul_http_port": 8500,
              "_consul_join": ["provider=azure resource_group=rg vm_scale_set=s subscription_id=x"],
              "consul_gossip_encryption": True, "_consul_gossip_key": "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=",
              "consul_autopilot": {"cleanup_dead_servers": True, "last_contact_threshold": "200ms",
                                   "server_stabilization_time": "10s"}, "consul_ui": True,
              "nomad_data_dir": "/opt/nomad", "nomad_log_level": "INFO", "nomad_bind_addr": "0.0.0.0",
              "nomad_advertise_addr": "{{ GetPrivateIP }}", "nomad_http_port": 4646, "hashistack_host_nomad_datacenter": "web",
              "nomad_gossip_encryption": True, "_nomad_gossip_key": "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=",
              "_nomad_join": ["10.0.0.4"], "nomad_node_class": "web", "nomad_client_meta": {"tier": 1},
              "nomad_consul": {"address": "127.0.0.1:8500"},
              # the roles' defaults: TLS and ACLs off (molecule tls_acl validates them on)
              "consul_tls_enabled": False, "consul_acl_enabled": False,
              "nomad_tls_enabled": False, "nomad_acl_enabled": False}
    for server in (True, False):
        v = dict(common, _consul_server=server, _nomad_server=server, _consul_pool="p", _nomad_pool="p")
        for product, cmd in (("consul", ["validate"]), ("nomad", ["config", "validate"])):
            # the main file and the secrets file (servers' nomad, every consul) together, as the roles stage them
            d = tmp_path / f"{product}-{server}"
            d.mkdir()
            names = [f"{product}.hcl"] + ([f"{product}-secrets.hcl"] if product == "consul" or server else [])
            for name in names:
                (d / name.replace(f"{product}-", "")).write_text(
                    env.from_string((root / product / "templates" / f"{name}.j2").read_text()).render(**v))
            r = run(consul if product == "consul" else nomad, *cmd, f"{d}/")
            assert r.returncode == 0, (product, server, r.stderr, [p.read_text() for p in d.iterdir()])

"""`consul validate` / `nomad config validate` and agent start refuse bad configuration, naming the key."""

from __future__ import annotations

import json

from .conftest import run

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

"""Malformed configuration gives error messages, never a Python exception."""

from __future__ import annotations

import pytest

from sandbox.agents import consul_cli, nomad_cli

MALFORMED = [
    "ports = 5\n", "ports { http = \"x\" }\n", "ports { http = [1] }\n", "retry_join = { a = 1 }\n",
    "autopilot = [1, 2]\n", "node_meta = 3\n", "service { port = \"x\" }\n", "service { name = \"a\"\n args = [\"x\"] }\n", "service = [1]\n", "check { ttl = \"x\" }\n",
    "server = \"banana\"\n", "bootstrap_expect = -1\nserver = true\n", "encrypt = 5\n", "{{{\n", "ports {\n",
    "datacenter = \"DC 1\"\n", "performance { raft_multiplier = \"x\" }\n", "telemetry { prometheus_retention_time = 5 }\n",
    "limits { kv_max_value_size = \"x\" }\n", "services = \"web\"\n",
]


NOMAD_MALFORMED = ["server = 5\n", "client { servers = 4 }\n", "server { enabled = true\n bootstrap_expect = \"x\" }\n",
                   "plugin = 1\n", "consul = [1]\n", "advertise { http = 1 }\n", "ports { http = \"x\" }\n",
                   "server { enabled = true\n heartbeat_grace = 5 }\n"]
BUILD = {"version": "1.20.1", "revision": "0" * 40}


@pytest.mark.parametrize("text", MALFORMED)
def test_consul_config_errors_are_messages(text, tmp_path, capsys):
    """Whatever the configuration, validate and agent start answer with an error message and exit 1; the CLI
    code itself raises nothing (so no Python traceback reaches the user)."""
    f = tmp_path / "c.hcl"
    f.write_text('data_dir = "/tmp/x"\n' + text)
    for args in (["validate", str(f)], ["agent", "-config-file", str(f)]):
        assert consul_cli.cli(args, BUILD) == 1, (text, args)
        err = capsys.readouterr().err
        assert err.strip() and "Traceback" not in err, (text, args, err)


@pytest.mark.parametrize("text", NOMAD_MALFORMED)
def test_nomad_config_errors_are_messages(text, tmp_path, capsys):
    f = tmp_path / "n.hcl"
    f.write_text('data_dir = "/tmp/x"\n' + text)
    for args in (["config", "validate", str(f)], ["agent", "-config", str(f)]):
        assert nomad_cli.cli(args, dict(BUILD, version="1.9.3")) == 1, (text, args)
        err = capsys.readouterr().err
        assert err.strip() and "Traceback" not in err, (text, args, err)



"""Config loading, merging and checking against the documented keys/types."""

from __future__ import annotations

import json

import pytest

from sandbox.agents import config, sockaddr
from sandbox.agents.config import check, load_and_check, merge, parse_duration


def test_known_keys_and_weak_types():
    c, errs = check("consul", {"server": "true", "bootstrap_expect": "3", "ports": {"http": 8501},
                               "retry_join": "10.0.0.1", "performance": {"raft_multiplier": 1}})
    assert errs == []
    assert c["server"] is True and c["bootstrap_expect"] == 3 and c["retry_join"] == ["10.0.0.1"]


@pytest.mark.parametrize("product,data,needle", [
    ("consul", {"bootstrap_expectt": 3}, "invalid config key bootstrap_expectt"),
    ("consul", {"ports": {"htp": 1}}, "invalid config key ports.htp"),
    ("consul", {"bootstrap_expect": "three"}, "bootstrap_expect"),
    ("consul", {"server": "yes please"}, "server"),
    ("consul", {"ports": "8500"}, "ports"),
    ("consul", {"autopilot": {"last_contact_threshold": "200"}}, "autopilot.last_contact_threshold"),
    ("consul", {"log_level": "verbose"}, "log_level"),
    ("nomad", {"server": {"bootstrap_expct": 3}}, "unexpected keys server.bootstrap_expct"),
    ("nomad", {"client": {"servers": {"a": 1}}}, "client.servers"),
    ("nomad", {"server": {"heartbeat_grace": "soon"}}, "server.heartbeat_grace"),
])
def test_check_rejects_and_names_key(product, data, needle):
    _c, errs = check(product, data)
    assert errs and any(needle in e for e in errs), errs


def test_documented_extra_and_labelled_blocks():
    _c, errs = check("nomad", {"plugin": {"raw_exec": {"config": {"enabled": True}}},
                               "client": {"enabled": True, "host_volume": {"data": {"path": "/d"}}}})
    assert errs == []
    _c, errs = check("consul", {"service": {"name": "web"}, "start_join": ["a"]})
    assert errs == []


def test_product_rules():
    assert any("bootstrap_expect" in e for e in config.consul_rules({"data_dir": "/x", "bootstrap_expect": 3}, True))
    assert any("mutually exclusive" in e for e in config.consul_rules(
        {"data_dir": "/x", "server": True, "bootstrap_expect": 3, "bootstrap": True}, True))
    assert any("data_dir" in e for e in config.consul_rules({"server": True}, False))
    assert any("encrypt" in e for e in config.consul_rules({"data_dir": "/x", "encrypt": "abc"}, True))
    assert config.consul_rules({"data_dir": "/x", "server": True, "bootstrap_expect": 3,
                                "encrypt": "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s="}, True) == []
    assert any("bootstrap_expect" in e for e in config.nomad_rules(
        {"data_dir": "/x", "server": {"bootstrap_expect": 3}, "client": {"enabled": True}}, True))
    assert config.nomad_rules({"data_dir": "/x", "server": {"enabled": True, "bootstrap_expect": 3}}, True) == []


def test_merge_semantics():
    assert merge({"a": 1, "m": {"x": 1}, "l": [1]}, {"a": 2, "m": {"y": 2}, "l": [2]}) == \
        {"a": 2, "m": {"x": 1, "y": 2}, "l": [1, 2]}


def test_load_dir_lexical_order_hcl_and_json(tmp_path):
    (tmp_path / "b.json").write_text(json.dumps({"datacenter": "dc2", "retry_join": ["b"]}))
    (tmp_path / "a.hcl").write_text('datacenter = "dc1"\ndata_dir = "/x"\nretry_join = ["a"]\n')
    (tmp_path / "c.hcl").write_text('log_level = "debug"\n')
    (tmp_path / "z.txt").write_text("not config")
    c, errs = load_and_check("consul", [str(tmp_path)])
    assert errs == []
    assert c["datacenter"] == "dc2" and c["retry_join"] == ["a", "b"] and c["log_level"] == "debug"
    _c, errs = load_and_check("consul", [str(tmp_path / "missing")])
    assert errs and "no such file" in errs[0]


@pytest.mark.parametrize("text,seconds", [("10s", 10), ("1m30s", 90), ("200ms", 0.2), ("1h", 3600), ("1.5s", 1.5), ("0", 0)])
def test_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


def test_bad_duration():
    with pytest.raises(ValueError):
        parse_duration("10")


def test_sockaddr_templates():
    lo = sockaddr.render('{{ GetInterfaceIP "lo" }}')
    assert lo == "127.0.0.1"
    assert sockaddr.render('{{ GetAllInterfaces | include "name" "^lo$" | attr "address" }}') == "127.0.0.1"
    assert sockaddr.render("10.0.0.1") == "10.0.0.1"
    priv = sockaddr.render("{{ GetPrivateIP }}")
    assert priv == "" or not priv.startswith("127.")
    with pytest.raises(sockaddr.TemplateError):
        sockaddr.render('{{ GetInterfaceIP "no-such-if0" }}')
    with pytest.raises(sockaddr.TemplateError):
        sockaddr.render("{{ NoSuchFunction }}")


def test_repeated_assignments(tmp_path):
    f = tmp_path / "a.hcl"
    f.write_text('data_dir = "/x"\nretry_join = ["a"]\nretry_join = ["b", "c"]\nlog_level = "info"\nlog_level = "debug"\n')
    c, errs = load_and_check("consul", [str(f)])
    assert errs == [] and c["retry_join"] == ["a", "b", "c"] and c["log_level"] == "debug"


def test_address_templates_must_resolve():
    errs = config.consul_rules({"data_dir": "/x", "bind_addr": '{{ GetInterfaceIP "no-such-if0" }}'}, True)
    assert errs and errs[0].startswith("bind_addr: ")
    errs = config.consul_rules({"data_dir": "/x", "client_addr": '{{ GetAllInterfaces | include "name" "^nope$" }}'}, True)
    assert errs == ["client_addr: No address found for template '{{ GetAllInterfaces | include \"name\" \"^nope$\" }}'"]
    assert config.consul_rules({"data_dir": "/x", "bind_addr": '{{ GetInterfaceIP "lo" }}'}, True) == []
    errs = config.nomad_rules({"data_dir": "/x", "server": {"enabled": True}, "advertise": {"rpc": "{{ Bogus }}"}}, True)
    assert errs and errs[0].startswith("advertise.rpc: ")

"""HCL parser used by the Consul/Nomad stand-ins."""

from __future__ import annotations

import pytest

from sandbox.agents import hcl
from sandbox.agents.hcl import HCLError, Repeated, parse


def test_attributes_blocks_lists_maps():
    d = parse('''
# comment
datacenter = "dc1" // trailing
/* block
   comment */
server = true
bootstrap_expect = 3
ratio = 0.5
big = 1e3
neg = -4
hex = 0x10
retry_join = ["10.0.0.1", "provider=azure tag_name=role tag_value=server",]
ports {
  http = 8500
  serf_lan = 8301
}
node_meta = {
  rack = "r1"
  "quoted key" = "v"
}
empty_list = []
nothing = null
''')
    assert d == {"datacenter": "dc1", "server": True, "bootstrap_expect": 3, "ratio": 0.5, "big": 1000.0, "neg": -4,
                 "hex": 16, "retry_join": ["10.0.0.1", "provider=azure tag_name=role tag_value=server"],
                 "ports": {"http": 8500, "serf_lan": 8301}, "node_meta": {"rack": "r1", "quoted key": "v"},
                 "empty_list": [], "nothing": None}


def test_string_escapes_and_templates():
    d = parse(r'''
a = "tab\there \"quoted\" back\\slash \u00e9"
bind_addr = "{{ GetInterfaceIP \"eth0\" }}"
interp = "${attr.kernel.name} and ${meta["x"]}"
''')
    assert d["a"] == 'tab\there "quoted" back\\slash é'
    assert d["bind_addr"] == '{{ GetInterfaceIP "eth0" }}'
    assert d["interp"] == '${attr.kernel.name} and ${meta["x"]}'


def test_heredoc():
    d = parse("script = <<EOF\nline 1\n  line 2\nEOF\nindented = <<-EOT\n    a\n      b\n    EOT\nafter = 1\n")
    assert d["script"] == "line 1\n  line 2\n"
    assert d["indented"] == "a\n  b\n"
    assert d["after"] == 1


def test_labelled_and_repeated_blocks():
    d = parse('''
job "web" {
  datacenters = ["dc1"]
  group "a" {
    count = 2
    task "t" { driver = "raw_exec" }
  }
  group "b" { count = 1 }
}
plugin "raw_exec" {
  config { enabled = true }
}
server { enabled = true }
server { bootstrap_expect = 3 }
''')
    assert d["job"]["web"]["group"]["a"]["count"] == 2
    assert d["job"]["web"]["group"]["a"]["task"]["t"]["driver"] == "raw_exec"
    assert d["job"]["web"]["group"]["b"] == {"count": 1}
    assert d["plugin"] == {"raw_exec": {"config": {"enabled": True}}}
    assert isinstance(d["server"], Repeated) and list(d["server"]) == [{"enabled": True}, {"bootstrap_expect": 3}]


@pytest.mark.parametrize("text,needle", [
    ('a = "unterminated\n', "not terminated"),
    ("a = [1, 2\n", "expected"),
    ("ports {\n http = 1\n", "expected key"),
    ("a = @\n", "illegal char"),
    ("/* never closed", "unterminated comment"),
    ('a = "bad \\q escape"', "unknown escape"),
    ("x = <<EOF\nno end\n", "not terminated"),
    ("key\n", "expected start of object"),
])
def test_syntax_errors_have_positions(text, needle):
    with pytest.raises(HCLError) as e:
        parse(text)
    assert needle in str(e.value)
    assert str(e.value).startswith("At ")


def test_json_loader():
    assert hcl.loads('{"a": {"b": [1]}}', "json") == {"a": {"b": [1]}}
    with pytest.raises(HCLError):
        hcl.loads("[1]", "json")
    with pytest.raises(HCLError):
        hcl.loads("{", "json")

"""After the rejected config the agents still run the old config, and nothing bad went live."""

import json


def _get(host, port, path):
    return json.loads(host.check_output("curl -sf http://127.0.0.1:%s%s", str(port), path))


def test_agents_running_old_config(host):
    assert host.service("consul").is_running
    assert host.service("nomad").is_running
    assert _get(host, 8500, "/v1/status/leader")
    assert _get(host, 4646, "/v1/status/leader")
    assert not host.file("/etc/consul.d/90-extra.json").exists
    assert not host.file("/etc/nomad.d/90-extra.json").exists
    assert "no_such_consul_key" not in host.file("/etc/consul.d/consul.hcl").content_string


def test_rejected_file_stayed_in_staging(host):
    staged = host.file("/var/lib/hashistack/staging/consul/90-extra.json")
    assert staged.exists and "no_such_consul_key" in staged.content_string

"""sandbox/hosts through its CLI: boot, SSH, networks and peering, IMDS, restart/reimage, cleanup.

One sandbox (3 hosts) is shared by the tests of this module; the crash-recovery test uses a
second sandbox of its own.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import textwrap
import time

import pytest
from hosts_helpers import CLEAN, can_boot_hosts, make_sandbox

pytestmark = [pytest.mark.hosts, pytest.mark.xdist_group("sandbox-hosts")]

NET_A, NET_B = "10.93.1", "10.93.2"
CUSTOM_DATA = textwrap.dedent("""\
    #cloud-config
    write_files:
      - path: /etc/sandbox-custom-data
        content: |
          written by cloud-init
    runcmd:
      - [sh, -c, "cat /var/lib/cloud/data/instance-id >> /var/tmp/custom-data-runs"]
    """)


@pytest.fixture(scope="module")
def hosts(sandbox, tmp_path_factory):
    cd = tmp_path_factory.mktemp("cd") / "user-data"
    cd.write_text(CUSTOM_DATA)
    a1 = sandbox.cli_json("up", "a1", "--network", "neta", "--ip", f"{NET_A}.11", "--custom-data", str(cd),
                          "--hostname", "alpha-one")
    a2 = sandbox.cli_json("up", "a2", "--network", "neta", "--ip", f"{NET_A}.12")
    b1 = sandbox.cli_json("up", "b1", "--network", "netb", "--ip", f"{NET_B}.11")
    return {"a1": a1, "a2": a2, "b1": b1}


def _wait_cloud_init(sandbox, name):
    r = sandbox.sh(name, "cloud-init status --wait >/dev/null; cloud-init status")
    assert "done" in r.stdout, r.stdout + r.stderr


def test_up_list_and_ssh(sandbox, hosts):
    listed = {h["name"]: h for h in sandbox.cli_json("list")}
    assert set(listed) == {"a1", "a2", "b1"}
    assert all(h["state"] == "running" for h in listed.values())
    assert listed["a1"]["ip"] == f"{NET_A}.11" and listed["a1"]["gateway"] == f"{NET_A}.1"
    r = sandbox.ssh(f"{NET_A}.11", "hostname; sudo -n id -u; systemctl is-system-running --wait")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["alpha-one", "0", "running"]


def test_custom_data_runs_at_first_boot(sandbox, hosts):
    _wait_cloud_init(sandbox, "a1")
    r = sandbox.sh("a1", "cat /etc/sandbox-custom-data; wc -l < /var/tmp/custom-data-runs")
    assert r.stdout.split("\n")[:2] == ["written by cloud-init", "1"]
    # a host without custom data has no such file
    assert sandbox.sh("a2", "test -e /etc/sandbox-custom-data").returncode == 1


def _ping(sandbox, src, ip):
    """Reachable (retried: first packets may be lost on a busy box)."""
    return sandbox.reaches(src, ip)


def _blocked(sandbox, src, ip):
    """Unreachable: two tries without any reply."""
    return not sandbox.reaches(src, ip, tries=2)


def test_networks_isolated_until_connected(sandbox, hosts):
    assert _ping(sandbox, "a1", f"{NET_A}.12")           # same network
    assert _blocked(sandbox, "a1", f"{NET_B}.11")       # other network: unreachable
    assert _blocked(sandbox, "b1", f"{NET_A}.11")
    assert _ping(sandbox, "b1", f"{NET_B}.1")            # own gateway (the controller)
    assert _blocked(sandbox, "b1", f"{NET_A}.1")        # not the other network's gateway
    sandbox.cli("network", "connect", "neta", "netb")
    try:
        assert _ping(sandbox, "a1", f"{NET_B}.11")       # peered: both directions
        assert _ping(sandbox, "b1", f"{NET_A}.12")
        r = sandbox.sh("b1", f"timeout 5 bash -c '</dev/tcp/{NET_A}.11/22' && echo open")
        assert r.stdout.strip() == "open"
    finally:
        sandbox.cli("network", "disconnect", "neta", "netb")
    assert _blocked(sandbox, "b1", f"{NET_A}.11")


def _curl(sandbox, host, url, *headers):
    hdr = " ".join(f"-H '{h}'" for h in headers)
    r = sandbox.sh(host, f"curl -s -w '\\n%{{http_code}}' {hdr} 'http://169.254.169.254{url}'")
    body, _, code = r.stdout.rpartition("\n")
    return int(code), body


def test_imds(sandbox, hosts):
    code, body = _curl(sandbox, "a1", "/metadata/instance?api-version=2021-02-01", "Metadata: true")
    assert code == 200
    doc = json.loads(body)
    assert doc["compute"]["name"] == "a1"
    assert doc["compute"]["osProfile"]["computerName"] == "alpha-one"
    assert doc["network"]["interface"][0]["ipv4"]["ipAddress"][0]["privateIpAddress"] == f"{NET_A}.11"
    # the caller is identified by its address
    code, body = _curl(sandbox, "a2", "/metadata/instance/compute/name?api-version=2021-02-01&format=text",
                       "Metadata: true")
    assert (code, body) == (200, "a2")
    code, body = _curl(sandbox, "a1", "/metadata/instance/network?api-version=2021-02-01", "Metadata: true")
    assert code == 200 and "interface" in json.loads(body)
    # like the real IMDS: the Metadata header is required, X-Forwarded-For is rejected
    code, body = _curl(sandbox, "a1", "/metadata/instance?api-version=2021-02-01")
    assert code == 400 and json.loads(body) == {"error": "Bad request. Required metadata header not specified"}
    code, body = _curl(sandbox, "a1", "/metadata/instance?api-version=2021-02-01", "Metadata: false")
    assert code == 400
    code, body = _curl(sandbox, "a1", "/metadata/instance?api-version=2021-02-01", "Metadata: true",
                       "X-Forwarded-For: 10.0.0.1")
    assert code == 400
    code, body = _curl(sandbox, "a1", "/metadata/instance", "Metadata: true")
    assert code == 400 and "newest-versions" in json.loads(body)
    # no managed identity on this host
    code, body = _curl(sandbox, "a1", "/metadata/identity/oauth2/token?api-version=2018-02-01"
                       "&resource=https%3A%2F%2Fmanagement.azure.com%2F", "Metadata: true")
    assert code == 400 and json.loads(body)["error_description"] == "Identity not found"


def test_restart_keeps_root_and_reimage_resets_it(sandbox, hosts):
    _wait_cloud_init(sandbox, "a1")
    sandbox.sh("a1", "echo kept > /root/marker", check=True)
    sandbox.cli("restart", "a1")
    assert sandbox.sh("a1", "cat /root/marker").stdout.strip() == "kept"
    _wait_cloud_init(sandbox, "a1")
    assert sandbox.sh("a1", "wc -l < /var/tmp/custom-data-runs").stdout.strip() == "1"  # not again
    sandbox.cli("reimage", "a1")
    assert sandbox.sh("a1", "test -e /root/marker").returncode == 1
    _wait_cloud_init(sandbox, "a1")
    r = sandbox.sh("a1", "cat /etc/sandbox-custom-data; wc -l < /var/tmp/custom-data-runs")
    assert r.stdout.split("\n")[:2] == ["written by cloud-init", "1"]   # ran again on the fresh root
    assert sandbox.ssh(f"{NET_A}.11", "true").returncode == 0


def test_guest_reboot_comes_back(sandbox, hosts):
    before = {h["name"]: h["leader_pid"] for h in sandbox.cli_json("list")}["a2"]
    sandbox.sh("a2", "echo kept > /root/marker; systemctl reboot")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        cur = {h["name"]: h for h in sandbox.cli_json("list")}["a2"]
        if cur["leader_pid"] and cur["leader_pid"] != before:
            break
        time.sleep(0.3)
    assert cur["state"] == "running" and cur["leader_pid"] != before
    r = sandbox.ssh(f"{NET_A}.12", "sudo -n cat /root/marker")
    for _ in range(60):
        if r.returncode == 0:
            break
        time.sleep(0.5)
        r = sandbox.ssh(f"{NET_A}.12", "sudo -n cat /root/marker")
    assert r.stdout.strip() == "kept"


def test_down_removes_host(sandbox, hosts):
    sandbox.cli("down", "b1")
    assert "b1" not in {h["name"] for h in sandbox.cli_json("list")}
    left = sandbox.leftovers()
    assert not any("b1" in n for n in left["netns"])
    assert not any("/b1/" in m for m in left["mounts"])
    assert sandbox.cli("exec", "b1", "--", "true", check=False).returncode != 0


def test_gateway_mac_survives_hosts_leaving(sandbox, hosts):
    """A bridge would take its lowest port MAC and change it when that host goes away; the
    other hosts would then keep a stale ARP entry for their gateway."""
    bridge = sandbox.cli_json("network", "list")["networks"]["neta"]["bridge"]
    mac = open(f"/sys/class/net/{bridge}/address").read()
    sandbox.cli_json("up", "a3", "--network", "neta", "--ip", f"{NET_A}.13")
    sandbox.cli("down", "a3")
    assert open(f"/sys/class/net/{bridge}/address").read() == mac
    assert sandbox.sh("a1", f"ping -c1 -W2 {NET_A}.1 >/dev/null").returncode == 0


def test_errors_are_explained(sandbox, hosts):
    r = sandbox.cli("up", "a2", "--network", "neta", "--ip", f"{NET_A}.99", check=False)
    assert r.returncode == 1 and "exists already" in r.stderr
    r = sandbox.cli("up", "x1", "--network", "neta", "--ip", f"{NET_A}.12", check=False)
    assert r.returncode == 1 and "is used by host a2" in r.stderr
    r = sandbox.cli("up", "x1", "--network", "neta", "--ip", f"{NET_A}.1", check=False)
    assert r.returncode == 1 and "gateway" in r.stderr
    r = sandbox.cli("up", "x1", "--network", "netc", "--ip", f"{NET_A}.50", check=False)   # overlaps neta
    assert r.returncode == 1 and f"overlaps {NET_A}.0/24" in r.stderr
    assert "x1" not in {h["name"] for h in sandbox.cli_json("list")}


def test_crash_recovery_and_sequential_sandboxes():
    """SIGKILL every process of a sandbox, then `down --all` leaves nothing; a new one works."""
    if can_boot_hosts():
        pytest.skip(can_boot_hosts())
    sb = make_sandbox()
    try:
        sb.cli_json("up", "c1", "--network", "crash", "--ip", "10.93.9.11")
        left = sb.leftovers()
        assert left["netns"] and left["mounts"] and left["processes"] and left["nft"]
        for pid in left["processes"]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        sb.cli("down", "--all")
        assert sb.leftovers() == CLEAN
        # the same sandbox (run dir) comes up again
        sb.cli_json("up", "c1", "--network", "crash", "--ip", "10.93.9.11")
        assert sb.ssh("10.93.9.11", "hostname").stdout.strip() == "c1"
    finally:
        sb.cli("down", "--all")
        shutil.rmtree(sb.run, ignore_errors=True)
    assert sb.leftovers() == CLEAN

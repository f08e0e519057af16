"""The Scheduled Events service on real scale-set instances (``sandbox.arm serve --hosts``).

A scale set of 2 with a 15-minute terminate notification; on each instance the Consul and Nomad
stand-ins run (dev agents) and the service is installed by the scheduled_events role over SSH. Then
an instance is deleted through the vmss_instance module, and the other by a capacity decrease (as
autoscale would): each time the service inside drains its Nomad node, makes Consul leave and approves
the Terminate, so the delete completes long before the notice runs out. The journal shows it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import test_hosts_arm
import yaml
from hosts_helpers import SSH_OPTS
from test_hosts_arm import RG, _host_by_ip, _instance_ips, _vmss, _vnet

from sandbox.agents.build import unpack

pytestmark = [pytest.mark.hosts, pytest.mark.xdist_group("sandbox-hosts")]
# the SDK clients as test_hosts_arm sets them up (module scope: our own; `emu` comes from conftest)
clients = test_hosts_arm.clients

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
UNIT = "hashistack-scheduled-events.service"
NOTICE = "PT15M"
AGENT_UNIT = """[Unit]
Description={product} stand-in (dev agent)
After=network-online.target
[Service]
# state kept in a persistent data dir, so the drained node is still known after a reboot
ExecStart=/usr/bin/python3 /usr/local/bin/{product} agent -dev -data-dir /var/lib/{product}-dev
[Install]
WantedBy=multi-user.target
"""


def _playbook(tmp_path: Path, name: str, plays: list, inventory: str, env: dict | None = None):
    pb = tmp_path / f"{name}.yml"
    pb.write_text(yaml.safe_dump(plays, sort_keys=False))
    inv = tmp_path / f"{name}.ini"
    inv.write_text(inventory)
    e = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".cache" / "collections"), ANSIBLE_NOCOLOR="1",
             ANSIBLE_HOST_KEY_CHECKING="false", ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"),
             ANSIBLE_DEPRECATION_WARNINGS="false", PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    e.update(env or {})
    r = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(inv), str(pb)], capture_output=True, text=True,
                       env=e, timeout=900)
    assert r.returncode == 0, r.stdout[-5000:] + r.stderr[-2000:]
    return r.stdout


def _recap_changed(out: str) -> dict:
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)", out, re.M)}


class Journal:
    """``journalctl -f`` of the service inside a host, read from the controller (it ends with the host)."""

    def __init__(self, sb, name):
        self.lines: list[str] = []
        self.proc = subprocess.Popen([sys.executable, "-m", "sandbox.hosts", "exec", name, "--", "journalctl", "-f",
                                      "-o", "cat", "-n", "all", "-u", UNIT], cwd=ROOT, env=sb.env,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True).start()

    def wait(self, text: str, timeout: float = 60):
        deadline = time.time() + timeout
        while not any(text in ln for ln in self.lines):
            assert time.time() < deadline, f"{text!r} not in the journal:\n" + "".join(self.lines)
            time.sleep(0.2)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


@pytest.fixture(scope="module")
def instances(emu, clients, tmp_path_factory):
    """The scale set 'web' (2, terminate notification), stand-in agents + the service on each instance."""
    arm, sb = emu
    res, net, compute = clients
    res.resource_groups.create_or_update(RG, {"location": "westeurope"})
    subnet = _vnet(net, "vnet-se", "10.113.0.0/16").subnets[0]
    key = sb.cli("ssh-key").stdout.strip()
    _vmss(compute, "web", subnet.id, 2, open(key + ".pub").read().strip())
    compute.virtual_machine_scale_sets.begin_update(RG, "web", {"properties": {"virtualMachineProfile": {
        "scheduledEventsProfile": {"terminateNotificationProfile": {"enable": True, "notBeforeTimeout": NOTICE}}}}}
    ).result()
    compute.virtual_machine_scale_sets.begin_update_instances(RG, "web", {"instanceIds": ["*"]}).result()

    tmp = tmp_path_factory.mktemp("scheduled-events")
    subprocess.run([sys.executable, "-m", "sandbox.agents", "build", "--consul", "1.20.1", "--nomad", "1.9.3",
                    "--out", str(tmp / "rel")], cwd=ROOT, check=True, capture_output=True)
    (tmp / "bin").mkdir()
    bins = {p: str(unpack(tmp / "rel" / p / v / f"{p}_{v}_linux_amd64.zip", tmp / "bin"))
            for p, v in (("consul", "1.20.1"), ("nomad", "1.9.3"))}
    ips = _instance_ips(arm, "web")
    inventory = "[instances]\n" + "".join(
        f"{ip} ansible_user=azureuser ansible_ssh_private_key_file={key} ansible_python_interpreter=/usr/bin/python3 "
        f"ansible_ssh_common_args='{' '.join(SSH_OPTS)}'\n" for ip in ips.values())
    agents = {"hosts": "instances", "become": True, "gather_facts": False, "tasks": [
        {"name": "Wait for SSH", "ansible.builtin.wait_for_connection": {"timeout": 120}},
        {"name": "Stand-in agents", "ansible.builtin.copy": {"src": "{{ item.value }}", "dest": "/usr/local/bin/{{ item.key }}",
                                                             "mode": "0755"}, "loop": "{{ bins | dict2items }}"},
        {"name": "Agent units", "ansible.builtin.copy": {"content": "{{ units[item] }}",
                                                         "dest": "/etc/systemd/system/{{ item }}.service", "mode": "0644"},
         "loop": ["consul", "nomad"]},
        {"name": "Agents running", "ansible.builtin.systemd_service": {"name": "{{ item }}", "state": "started",
                                                                       "enabled": True, "daemon_reload": True},
         "loop": ["consul", "nomad"]},
    ], "vars": {"bins": bins, "units": {p: AGENT_UNIT.format(product=p) for p in bins}}}
    install = {"hosts": "instances", "become": True, "gather_facts": False, "tasks": [
        {"name": "The service", "ansible.builtin.include_role": {"name": "hashistack.azure.scheduled_events"}}]}
    _playbook(tmp, "agents", [agents], inventory)
    first = _recap_changed(_playbook(tmp, "install", [install], inventory))
    again = _recap_changed(_playbook(tmp, "install", [install], inventory))
    return {"ips": ips, "tmp": tmp, "first": first, "again": again}


def _ready(sb, ip):
    """The service runs and Nomad has registered this instance's client node."""
    name = _host_by_ip(sb)[ip]["name"]
    deadline = time.time() + 90
    while True:
        r = sb.sh(name, "systemctl is-active " + UNIT + " && curl -sf http://127.0.0.1:4646/v1/agent/self")
        if r.returncode == 0 and (json.loads(r.stdout.split("\n", 1)[1]).get("stats", {}).get("client") or {}).get("node_id"):
            return name
        assert time.time() < deadline, r.stdout + r.stderr
        time.sleep(1)


def _vmss_instance(instances, arm, iid, action):
    """hashistack.azure.vmss_instance on localhost against the emulator; returns when the LRO is done."""
    task = {"name": action, "hashistack.azure.vmss_instance": {
        "resource_group": RG, "vmss_name": "web", "instance_ids": [iid], "action": action, "timeout": 600}}
    _playbook(instances["tmp"], action, [{"hosts": "localhost", "connection": "local", "gather_facts": False,
                                          "tasks": [task]}], "localhost\n",
              dict(arm.env(), ANSIBLE_PYTHON_INTERPRETER=sys.executable))


def _node(sb, name):
    r = sb.sh(name, "curl -sf http://127.0.0.1:4646/v1/agent/self")
    nid = json.loads(r.stdout)["stats"]["client"]["node_id"]
    return json.loads(sb.sh(name, f"curl -sf http://127.0.0.1:4646/v1/node/{nid}").stdout)


def _assert_drained_left_approved(journal: Journal, vm: str, arm, sb, ip):
    text = "".join(journal.lines)
    term = re.search(r"imds: Terminate (\S+) for " + re.escape(vm), text)
    assert term, text
    eid = term.group(1)
    steps = [re.search(r"nomad: draining node (\S+) with deadline (\d+)s", text),
             re.search(r"nomad: node \S+ drained", text),
             re.search(r"consul: agent left the cluster", text),
             re.search(r"imds: approved Terminate " + re.escape(eid), text)]
    assert all(steps), text
    assert [s.start() for s in steps] == sorted(s.start() for s in steps), text   # drain, leave, then approve
    assert 0 < int(steps[0].group(2)) < 15 * 60                                     # shorter than the notice
    posts = [ln for ln in (sb.run / "imds.log").read_text().splitlines()
             if ln.startswith(ip + " ") and '"POST /metadata/scheduledevents' in ln]
    assert posts and posts[-1].rstrip().endswith(("200 -", "200"))


def test_role_installs_the_service_once(instances, emu):
    _, sb = emu
    assert set(instances["first"]) == set(instances["ips"].values()) and all(instances["first"].values())
    assert instances["again"] == {ip: 0 for ip in instances["ips"].values()}          # idempotent
    ip = sorted(instances["ips"].values())[0]
    name = _ready(sb, ip)
    cfg = json.loads(sb.sh(name, "cat /etc/hashistack/scheduled-events.json").stdout)
    assert cfg["nomad_addr"] == "http://127.0.0.1:4646" and cfg["margin_seconds"] == 60
    assert sb.sh(name, f"systemctl is-enabled {UNIT}").stdout.strip() == "enabled"


def test_restart_drains_approves_and_the_node_is_eligible_again_when_back(instances, emu):
    arm, sb = emu
    iid, ip = sorted(instances["ips"].items())[0]
    name = _ready(sb, ip)
    assert _node(sb, name)["SchedulingEligibility"] == "eligible"
    journal = Journal(sb, name)
    try:
        journal.wait("watching Scheduled Events for web_" + iid)
        _vmss_instance(instances, arm, iid, "restart")      # a 15-minute Reboot notice: done once approved
    finally:
        journal.close()
    text = "".join(journal.lines)
    reboot = re.search(r"imds: Reboot (\S+) for web_" + iid, text)
    assert reboot, text
    steps = [text.find("nomad: draining node"), text.find("drained"), text.find("imds: approved Reboot " + reboot.group(1))]
    assert -1 not in steps and steps == sorted(steps), text
    assert "consul: agent left" not in text                 # it comes back: Consul stays a member
    name = _ready(sb, ip)                                   # back from the reboot
    after = Journal(sb, name)
    try:
        after.wait("eligible again after Reboot " + reboot.group(1), timeout=120)
    finally:
        after.close()
    node = _node(sb, name)
    assert node["SchedulingEligibility"] == "eligible" and not node["DrainStrategy"]
    assert node["LastDrain"]["Meta"]["message"] == "Azure Reboot " + reboot.group(1)   # the same node, drained


def test_delete_through_the_module_drains_leaves_and_approves(instances, emu, clients):
    arm, sb = emu
    iid, ip = sorted(instances["ips"].items())[0]
    name = _ready(sb, ip)
    journal = Journal(sb, name)
    try:
        journal.wait("watching Scheduled Events for web_" + iid)
        _vmss_instance(instances, arm, iid, "delete")
        assert ip not in _host_by_ip(sb)
        _assert_drained_left_approved(journal, "web_" + iid, arm, sb, ip)
    finally:
        journal.close()


def test_capacity_decrease_outside_ansible_drains_leaves_and_approves(instances, emu, clients):
    arm, sb = emu
    _, _, compute = clients
    iid, ip = sorted(instances["ips"].items())[1]
    name = _ready(sb, ip)
    journal = Journal(sb, name)
    try:
        journal.wait("watching Scheduled Events for web_" + iid)
        compute.virtual_machine_scale_sets.begin_update(RG, "web", {"sku": {"capacity": 0}}).result(timeout=600)
        assert ip not in _host_by_ip(sb)
        _assert_drained_left_approved(journal, "web_" + iid, arm, sb, ip)
    finally:
        journal.close()

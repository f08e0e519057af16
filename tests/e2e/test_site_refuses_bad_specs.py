"""playbooks/site.yml stops on a bad cluster spec before it writes anything to Azure: each run goes
through ansible-playbook against the session's ARM emulator (no hosts needed) and must fail with a
message naming the problem, with not a single ARM write."""

from __future__ import annotations

import copy
import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

BASE = {
    "cluster": "badspec",
    "azure": {"resource_group": "hashistack-badspec", "location": "westeurope"},
    "ssh_public_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBadSpecTestKeyOnlyNotARealKey000000000000 t@t"],
    "servers": {"count": 3, "vm_size": "Standard_B2s"},
    "pools": [{"name": "west", "count": 1}, {"name": "north", "count": 1, "location": "northeurope"}],
    "networks": {"westeurope": "10.77.0.0/16", "northeurope": "10.78.0.0/16"},
}


def _spec(**changes):
    spec = copy.deepcopy(BASE)
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        node = spec
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if isinstance(node, list):
            node[int(leaf)] = value
        else:
            node[leaf] = value
    return spec


def _site(arm, arm_env, tmp_path, spec) -> tuple[subprocess.CompletedProcess, list]:
    spec = copy.deepcopy(spec)
    spec["azure"]["subscription_id"] = arm_env["AZURE_SUBSCRIPTION_ID"]
    (tmp_path / "spec.yml").write_text(json.dumps({"hashistack_spec": spec}))
    (tmp_path / "inventory.vmss.yml").write_text(json.dumps({
        "plugin": "hashistack.azure.vmss", "resource_groups": [spec["azure"]["resource_group"]],
        "tags": {"hashistack_cluster": spec["cluster"]}}))
    env = dict(os.environ, **arm_env, ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".cache/collections"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_INVENTORY_UNPARSED_FAILED="True", ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"))
    since = arm.mark()
    proc = subprocess.run([str(ROOT / ".venv/bin/ansible-playbook"), "-i", str(tmp_path / "inventory.vmss.yml"),
                           str(ROOT / "playbooks/site.yml"), "-e", f"@{tmp_path / 'spec.yml'}"],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    return proc, arm.writes(since)


@pytest.mark.parametrize(("changes", "expected"), [
    ({"servers__count": 2}, ["servers.count", "2"]),
    ({"servers__count": 0}, ["servers.count", "0"]),
    ({"servers__count": 4}, ["servers.count", "4"]),
    ({"pools__1__consul_datacenter": "dc2"}, ["pools", "consul_datacenter"]),
    ({"pools__1__nomad_region": "europe"}, ["pools", "nomad_region"]),
    ({"cluster": "Prod_1"}, ["cluster", "Prod_1"]),
    ({"pools__0__name": "web!"}, ["name", "web!"]),
    ({"networks__westeurope": "10.77.0.0/33"}, ["networks.westeurope", "10.77.0.0/33"]),
    ({"networks__northeurope": "10.77.128.0/17"}, ["overlap", "10.77.0.0/16", "10.77.128.0/17"]),
    ({"pools__1__vm_size": "Standard_Nope9"}, ["Standard_Nope9", "northeurope"]),
], ids=["even-servers", "zero-servers", "four-servers", "pool-datacenter", "pool-region", "cluster-name", "pool-name",
        "cidr", "overlapping-spaces", "unknown-vm-size"])
def test_bad_spec_stops_before_any_azure_write(arm, arm_env, tmp_path, changes, expected):
    proc, writes = _site(arm, arm_env, tmp_path, _spec(**changes))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    for text in expected:
        assert text in out, (text, out[-3000:])
    assert writes == [], writes


def test_quota_shortfall_stops_before_any_azure_write_and_says_where_there_is_room(arm, arm_env, tmp_path):
    # 3 servers + 1 west client of Standard_B2s (2 vCPUs each) need 8 B-family vCPUs in westeurope
    arm.set_quotas({"westeurope": {"standardBSFamily": 6}})
    try:
        proc, writes = _site(arm, arm_env, tmp_path, BASE)
    finally:
        arm.set_quotas({"westeurope": {"standardBSFamily": 100}})
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert "Stop when the quota does not fit" in out, out[-3000:]
    failure = out.split("Stop when the quota does not fit")[-1]
    assert "westeurope" in failure and "northeurope" in failure, failure[-2000:]  # the shortfall and where there is room
    assert writes == [], writes


def test_the_good_base_spec_gets_past_validation_and_quota(arm, arm_env, tmp_path):
    """The refusals above come from the changes, not from the base spec (checked in check mode: no write)."""
    spec = copy.deepcopy(BASE)
    spec["azure"]["subscription_id"] = arm_env["AZURE_SUBSCRIPTION_ID"]
    (tmp_path / "spec.yml").write_text(json.dumps({"hashistack_spec": spec}))
    env = dict(os.environ, **arm_env, ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".cache/collections"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"))
    (tmp_path / "play.yml").write_text(json.dumps([{
        "hosts": "localhost", "gather_facts": False,
        "tasks": [{"ansible.builtin.include_role": {"name": "hashistack.azure.azure_infra", "tasks_from": "preflight"}}]}]))
    since = arm.mark()
    proc = subprocess.run([str(ROOT / ".venv/bin/ansible-playbook"), "-i", "localhost,", "-c", "local",
                           "-e", "ansible_python_interpreter=" + str(ROOT / ".venv/bin/python"),
                           str(tmp_path / "play.yml"), "-e", f"@{tmp_path / 'spec.yml'}"],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert arm.writes(since) == []

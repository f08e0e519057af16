"""azure_infra's scale-in and server protection against the ARM emulator, without machines: the server
instances are protected from scale-in, so a capacity decrease from outside removes none; a re-run writes
nothing; a lower count in the spec is planned (newest first, or named) and check mode writes nothing; an
instance that the play cannot reach to drain is refused before any delete; a bad removal list is refused."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap

import pytest

from .conftest import BIN, COLLECTIONS, SSH_KEY, writes

PLAY = textwrap.dedent("""\
    - hosts: localhost
      connection: local
      gather_facts: false
      tasks:
        - name: Azure footprint
          ansible.builtin.import_role:
            name: hashistack.azure.azure_infra
    """)


def _spec(arm, rg, servers=3, west=2):
    return {"cluster": "scalein", "azure": {"subscription_id": arm.endpoint["subscription_id"], "resource_group": rg,
                                            "location": "westeurope"},
            "ssh_public_keys": [SSH_KEY], "servers": {"count": servers, "vm_size": "Standard_B2s"},
            "pools": [{"name": "west", "count": west}], "networks": {"westeurope": "10.61.0.0/16"}}


def _run(tmp_path, arm, spec, check=False, playbook=None, **extra):
    pb = tmp_path / "play.yml"
    pb.write_text(PLAY)
    pb = playbook or pb
    (tmp_path / "extra.json").write_text(json.dumps(dict({"hashistack_secrets_dir": str(tmp_path / "secrets"),
                                                          "azure_infra_keyvault_retention_days": 7},
                                                         **extra, hashistack_spec=spec)))
    # the cluster's Key Vault data plane through the emulator's proxy (tasks/keyvault.yml stores the gossip keys)
    env = dict(os.environ, **arm.env(), **arm.vault_env(), ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_NOCOLOR="1",
               ANSIBLE_PYTHON_INTERPRETER=os.path.join(BIN, "python"), ANSIBLE_LOCALHOST_WARNING="false")
    return subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", "localhost,", str(pb), "-e",
                           "@" + str(tmp_path / "extra.json")] + (["--check"] if check else []),
                          env=env, capture_output=True, text=True, timeout=600)


def _instances(sdk, rg, name):
    from azure.mgmt.compute import ComputeManagementClient
    vms = sdk.client(ComputeManagementClient).virtual_machine_scale_set_vms.list(rg, name)
    return {v.instance_id: v for v in vms}


def test_servers_protected_and_scale_in_planned(tmp_path, arm, arm_env, rg, sdk):
    from azure.mgmt.compute import ComputeManagementClient
    proc = _run(tmp_path, arm, _spec(arm, rg))
    assert proc.returncode == 0, proc.stdout[-4000:]
    servers = _instances(sdk, rg, "scalein-servers")
    assert len(servers) == 3
    assert all(v.protection_policy and v.protection_policy.protect_from_scale_in for v in servers.values())
    assert not any((v.protection_policy and v.protection_policy.protect_from_scale_in)
                   for v in _instances(sdk, rg, "scalein-west").values())

    # a second run writes nothing (protection already on, nothing to scale in)
    m = arm.mark()
    proc = _run(tmp_path, arm, _spec(arm, rg))
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert writes(arm, m) == []

    # a capacity decrease from outside (as the portal or autoscale would) removes no server
    from azure.core.exceptions import HttpResponseError
    compute = sdk.client(ComputeManagementClient, polling_interval=0.2)
    with pytest.raises(HttpResponseError, match="not protected from scale-in"):
        compute.virtual_machine_scale_sets.begin_update(rg, "scalein-servers", {"sku": {"capacity": 1}}).result()
    assert sorted(_instances(sdk, rg, "scalein-servers")) == sorted(servers)
    # the refused request changed nothing: the next reader (an upgrade's model play) still sees capacity 3
    assert compute.virtual_machine_scale_sets.get(rg, "scalein-servers").sku.capacity == 3

    # a lower count: check mode shows the newest instance going and writes nothing
    west = sorted(_instances(sdk, rg, "scalein-west"), key=int)
    m = arm.mark()
    proc = _run(tmp_path, arm, _spec(arm, rg, west=1), check=True)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "Removing scalein-west" in proc.stdout and "check mode: nothing is drained or deleted" in proc.stdout
    assert writes(arm, m) == []

    # the same through playbooks/scale.yml with the spec unchanged (check mode: the plan, no write)
    m = arm.mark()
    scale = os.path.join(COLLECTIONS, "ansible_collections", "hashistack", "azure", "playbooks", "scale.yml")
    proc = _run(tmp_path, arm, _spec(arm, rg), check=True, playbook=scale, pool="west", count="1")
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "Removing scalein-west" in proc.stdout and "Set its count to 1 in the spec file too" in proc.stdout
    assert writes(arm, m) == []
    proc = _run(tmp_path, arm, _spec(arm, rg), check=True, playbook=scale, pool="servers", count="5")
    assert proc.returncode != 0 and "Servers are scaled through the spec file" in proc.stdout

    # without the instance in the inventory it cannot be drained: refused before any delete
    m = arm.mark()
    proc = _run(tmp_path, arm, _spec(arm, rg, west=1))
    assert proc.returncode != 0
    assert f"Instance {west[-1]} " in proc.stdout and "is not in the inventory" in proc.stdout
    assert not [w for w in writes(arm, m) if w["method"] in ("POST", "DELETE")]
    assert sorted(_instances(sdk, rg, "scalein-west"), key=int) == west

    # a removal list naming more instances than the spec removes is refused, naming the fix
    proc = _run(tmp_path, arm, _spec(arm, rg, west=1), azure_infra_remove_instances=west)
    assert proc.returncode != 0
    assert "names 2 instances of scalein-west (pool west) but the spec removes only 1" in proc.stdout


def test_even_server_count_refused_before_any_write(tmp_path, arm, arm_env, rg):
    m = arm.mark()
    proc = _run(tmp_path, arm, _spec(arm, rg, servers=4))
    assert proc.returncode != 0
    assert "servers.count" in proc.stdout and "4" in proc.stdout
    assert writes(arm, m) == []


def test_check_mode_on_a_new_cluster_plans_no_scale_in_and_writes_nothing(tmp_path, arm, arm_env, rg):
    m = arm.mark()
    proc = _run(tmp_path, arm, _spec(arm, rg), check=True)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "Removing" not in proc.stdout
    assert writes(arm, m) == []

"""azure_infra in check mode on an existing cluster writes nothing; playbooks/destroy.yml removes the
cluster's resources but never a resource group that the collection did not create (against the session's ARM emulator; scale-set instances need no machines here)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_check_mode_writes_nothing_and_destroy_keeps_a_resource_group_it_did_not_create(arm, arm_env, tmp_path):
    from azure.mgmt.resource.resources import ResourceManagementClient

    client = ResourceManagementClient(arm.credential(), arm.subscription_id, **arm.client_kwargs())
    client.resource_groups.create_or_update("hashistack-mine", {"location": "westeurope", "tags": {"owner": "me"}})
    spec = {"cluster": "mine", "azure": {"subscription_id": arm.subscription_id, "resource_group": "hashistack-mine",
                                         "location": "westeurope"},
            "ssh_public_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDestroyTestKeyOnlyNotARealKey00000000000 t@t"],
            "servers": {"count": 1}, "pools": [{"name": "web", "count": 1}], "networks": {"westeurope": "10.91.0.0/16"}}
    (tmp_path / "spec.yml").write_text(json.dumps({"hashistack_spec": spec}))
    (tmp_path / "play.yml").write_text(json.dumps([{"hosts": "localhost", "gather_facts": False,
                                                    "roles": ["hashistack.azure.azure_infra"]}]))
    # the cluster's Key Vault data plane through the emulator's proxy; the gossip keys in a directory of the test
    env = dict(os.environ, **arm_env, **arm.vault_env(), ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".cache/collections"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"))
    base = [str(ROOT / ".venv/bin/ansible-playbook"), "-i", "localhost,", "-c", "local",
            "-e", "ansible_python_interpreter=" + str(ROOT / ".venv/bin/python"), "-e", f"@{tmp_path / 'spec.yml'}",
            "-e", f"hashistack_secrets_dir={tmp_path / 'secrets'}", "-e", "azure_infra_keyvault_retention_days=7"]

    def play(*args):
        proc = subprocess.run([*base, *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-4000:]
        return proc

    play(str(tmp_path / "play.yml"))
    group = client.resource_groups.get("hashistack-mine")
    assert group.tags == {"owner": "me", "hashistack_cluster": "mine"}  # tagged, but not marked as created by us
    assert {r.type for r in client.resources.list_by_resource_group("hashistack-mine")} >= {
        "Microsoft.Compute/virtualMachineScaleSets", "Microsoft.Network/virtualNetworks",
        "Microsoft.Network/networkSecurityGroups", "Microsoft.KeyVault/vaults"}

    since = arm.mark()  # check mode on the existing cluster: nothing to change, nothing written
    checked = play("--check", str(tmp_path / "play.yml")).stdout
    assert "changed=0" in checked and "failed=0" in checked, checked[-3000:]
    assert arm.writes(since) == []

    out = play(str(ROOT / "playbooks/destroy.yml"), "-e", "hashistack_destroy_confirm=mine").stdout
    assert "was not created by hashistack.azure" in out
    assert client.resource_groups.get("hashistack-mine").name == "hashistack-mine"
    assert list(client.resources.list_by_resource_group("hashistack-mine")) == []
    client.resource_groups.begin_delete("hashistack-mine").result()

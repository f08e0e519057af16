"""A scale-set instance (a real sandbox host) configures itself from the boot payload alone, no Ansible after the
scale-out: the verified releases from the mirror, the gossip keys from the cluster's Key Vault with its managed
identity, the files the roles write, Consul and Nomad running (a one-server cluster elects itself), boot.json all ok;
the custom data holds no gossip key; the roles then change nothing on it. An instance whose identity cannot read
the vault stops at the secrets step with the reason, agents not started."""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from hosts_helpers import grant

pytestmark = [pytest.mark.hosts, pytest.mark.xdist_group("sandbox-hosts")]

ROOT = Path(__file__).resolve().parents[3]
RG = "rg-hosts-boot"
LOC = "westeurope"
PREFIX, SUBNET, GATEWAY = "10.137.0.0/16", "10.137.1.0/24", "10.137.1.1"  # a subnet no other sandbox test uses
MIRROR_PORT = 18737
SECRETS_OFFICER = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"
SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"

RENDER = """\
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Payload
      ansible.builtin.include_role:
        name: hashistack.azure.boot_payload
      vars:
        boot_payload_pool: servers
    - name: Show
      ansible.builtin.copy:
        content: "{{ {'user_data': boot_payload_user_data, 'vault': hashistack_cluster.key_vault.name,
                      'consul': consul_pool_config, 'nomad': nomad_pool_config} | to_json }}"
        dest: "{{ out }}"
        mode: "0600"
"""


def _render(tmp_path, extra):
    (tmp_path / "play.yml").write_text(RENDER)
    out = tmp_path / "render.json"
    (tmp_path / "extra.json").write_text(json.dumps(dict(extra, out=str(out))))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".cache" / "collections"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_LOCALHOST_WARNING="false")
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", str(tmp_path / "play.yml"),
                           "-e", "@" + str(tmp_path / "extra.json")], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:]
    return json.loads(out.read_text())


CONVERGE = """\
- name: Consul
  hosts: consul_servers
  gather_facts: false
  become: true
  roles:
    - role: hashistack.azure.consul
- name: Nomad
  hosts: nomad_servers
  gather_facts: false
  become: true
  roles:
    - role: hashistack.azure.nomad
"""


def _converge(tmp_path, sb, ip, extra):
    """The roles on the self-configured instance (over SSH, as site.yml runs them): the PLAY RECAP."""
    key = sb.cli("ssh-key").stdout.strip()
    inv = {"all": {"hosts": {"new": {"ansible_host": ip, "ansible_user": "azureuser", "ansible_ssh_private_key_file": key,
                                     "ansible_python_interpreter": "/usr/bin/python3", "hashistack_pool": "servers"}},
                   "children": {"consul_servers": {"hosts": {"new": {}}}, "nomad_servers": {"hosts": {"new": {}}}}}}
    (tmp_path / "inventory.json").write_text(json.dumps(inv))
    (tmp_path / "converge.yml").write_text(CONVERGE)
    (tmp_path / "converge-extra.json").write_text(json.dumps(extra))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".cache" / "collections"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_HOST_KEY_CHECKING="false", ANSIBLE_PIPELINING="true")
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(tmp_path / "inventory.json"),
                           str(tmp_path / "converge.yml"), "-e", "@" + str(tmp_path / "converge-extra.json")],
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:]
    return proc.stdout


def _wait_boot(sb, name, timeout):
    """boot.json of host ``name`` once the boot script has finished (or what it has so far)."""
    deadline, doc = time.monotonic() + timeout, {}
    while time.monotonic() < deadline:
        r = sb.sh(name, "cat /var/lib/hashistack/boot.json 2>/dev/null")
        doc = json.loads(r.stdout) if r.stdout.strip() else {}
        if doc.get("state") in ("ok", "failed"):
            break
        time.sleep(3)
    return doc


def _model(arm, key, vnet, capacity, custom_data):
    return {"location": LOC, "identity": {"type": "SystemAssigned"},
            "sku": {"name": "Standard_B2s", "tier": "Standard", "capacity": capacity},
            "properties": {"upgradePolicy": {"mode": "Manual"}, "virtualMachineProfile": {
                "osProfile": {"computerNamePrefix": "boot", "adminUsername": "azureuser",
                              "customData": base64.b64encode(custom_data.encode()).decode(),
                              "linuxConfiguration": {"disablePasswordAuthentication": True, "ssh": {"publicKeys": [
                                  {"path": "/home/azureuser/.ssh/authorized_keys", "keyData": key}]}}},
                "storageProfile": {"imageReference": {"publisher": "Debian", "offer": "debian-12", "sku": "12",
                                                      "version": "latest"}},
                "networkProfile": {"networkInterfaceConfigurations": [{"name": "nic", "properties": {
                    "primary": True, "ipConfigurations": [{"name": "ip", "properties": {
                        "subnet": {"id": vnet.subnets[0].id}}}]}}]}}}}


def test_scaled_out_instance_configures_itself(emu, tmp_path):
    from azure.keyvault.secrets import SecretClient
    from azure.mgmt.authorization import AuthorizationManagementClient
    from azure.mgmt.compute import ComputeManagementClient
    from azure.mgmt.keyvault import KeyVaultManagementClient
    from azure.mgmt.network import NetworkManagementClient
    from azure.mgmt.resource.resources import ResourceManagementClient
    arm, sb = emu
    cred, kw, sub = arm.credential(), arm.client_kwargs(), arm.subscription_id
    spec = {"cluster": "boot", "azure": {"subscription_id": sub, "resource_group": RG, "location": LOC},
            "consul_version": "1.20.1", "nomad_version": "1.9.3", "servers": {"count": 1}}
    keys = {p: base64.b64encode(secrets.token_bytes(32)).decode() for p in ("consul", "nomad")}

    # the release tree (signed with the sandbox key) the instance downloads from
    tree = tmp_path / "releases"
    subprocess.run([sys.executable, "-m", "sandbox.agents", "build", "--consul", "1.20.1", "--nomad", "1.9.3",
                    "--out", str(tree)], cwd=ROOT, check=True, capture_output=True)
    settings = {  # the play's variables: the same for the payload and for the roles
        "hashistack_spec": spec, "hashistack_secrets_dir": str(tmp_path / "secrets"),
        "consul_gossip_key": keys["consul"], "nomad_gossip_key": keys["nomad"],
        "hashicorp_release_base_url": f"http://{GATEWAY}:{MIRROR_PORT}",
        "hashicorp_release_cache_dir": str(tmp_path / "cache"),
        "hashicorp_release_gpg_key": (tree / "sandbox-release-key.asc").read_text(), "hashicorp_release_gpg_fingerprint": ""}
    rendered = _render(tmp_path, settings)
    user_data = rendered["user_data"]
    assert keys["consul"] not in user_data and keys["nomad"] not in user_data

    # the cluster's vault with the gossip keys (azure_infra's job; done with the SDK here)
    ResourceManagementClient(cred, sub, **kw).resource_groups.create_or_update(RG, {"location": LOC})
    auth = AuthorizationManagementClient(cred, sub, **kw)
    vault = KeyVaultManagementClient(cred, sub, **kw).vaults.begin_create_or_update(RG, rendered["vault"], {
        "location": LOC, "properties": {"tenantId": arm.endpoint["tenant_id"], "sku": {"family": "A", "name": "standard"},
                                        "enableRbacAuthorization": True}}).result()
    grant(auth, sub, vault.id, SECRETS_OFFICER, arm.endpoint["principal_id"])
    client = SecretClient(vault.properties.vault_uri, cred, connection_verify=arm.ca_path,
                          proxies={"https": arm.endpoint["vault_proxy"]})
    for p, key in keys.items():
        client.set_secret(f"{p}-gossip-key", key)

    # one placeholder instance brings the subnet's gateway up, where the mirror listens
    net = NetworkManagementClient(cred, sub, **kw)
    vnet = net.virtual_networks.begin_create_or_update(RG, "boot-westeurope", {"location": LOC, "properties": {
        "addressSpace": {"addressPrefixes": [PREFIX]},
        "subnets": [{"name": "nodes", "properties": {"addressPrefix": SUBNET}}]}}).result()
    ssh_key = open(sb.cli("ssh-key").stdout.strip() + ".pub").read().strip()
    compute = ComputeManagementClient(cred, sub, **kw)
    compute.virtual_machine_scale_sets.begin_create_or_update(
        RG, "boot-servers", _model(arm, ssh_key, vnet, 1, "#cloud-config\n{}\n")).result(timeout=300)
    first = sb.cli_json("list")[0]["name"]
    principal = next(i["principal_id"] for i in arm.instances() if i["vmss_name"] == "boot-servers")
    grant(auth, sub, vault.id, SECRETS_USER, principal)
    mirror = subprocess.Popen([sys.executable, "-m", "sandbox.agents", "mirror", "--dir", str(tree), "--port",
                               str(MIRROR_PORT), "--bind", GATEWAY], cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        # scale out with the payload in the model: the new instance is on its own from here
        started = time.monotonic()
        compute.virtual_machine_scale_sets.begin_create_or_update(
            RG, "boot-servers", _model(arm, ssh_key, vnet, 2, user_data)).result(timeout=300)
        new, new_ip = next((h["name"], h["ip"]) for h in sb.cli_json("list") if h["name"] != first)
        doc = _wait_boot(sb, new, 240 - (time.monotonic() - started))
        assert doc.get("state") == "ok", json.dumps(doc, indent=1) + sb.sh(new, "journalctl -t hashistack-boot --no-pager | tail -20").stdout
        steps = [s["step"] for s in doc["steps"]]
        assert steps == ["release:consul", "release:nomad", "secrets", "users", "config:consul", "config:nomad",
                         "service:hashistack-scheduled-events.service", "agents"]
        assert all(s["ok"] and s["started"] and s["finished"] for s in doc["steps"])
        assert "signature by the payload's key and SHA-256" in doc["steps"][0]["message"]

        # the roles' files, byte for byte, and the secrets from the vault (0640, group of the agent)
        assert sb.sh(new, "cat /etc/consul.d/consul.hcl").stdout == rendered["consul"]
        assert sb.sh(new, "cat /etc/nomad.d/nomad.hcl").stdout == rendered["nomad"]
        assert sb.sh(new, "cat /var/lib/hashistack/staging/consul/consul.hcl").stdout == rendered["consul"]
        assert f'encrypt = "{keys["consul"]}"' in sb.sh(new, "cat /etc/consul.d/secrets.hcl").stdout
        assert f'encrypt = "{keys["nomad"]}"' in sb.sh(new, "cat /etc/nomad.d/secrets.hcl").stdout
        assert sb.sh(new, "stat -c '%U:%G %a' /etc/consul.d/secrets.hcl /opt/consul/data").stdout.split("\n")[:2] == [
            "root:consul 640", "consul:consul 750"]
        assert sb.sh(new, "readlink /usr/local/bin/consul").stdout.strip() == "/opt/hashicorp/consul/1.20.1/consul"

        # the agents run, enabled, and the one-server cluster has a leader
        r = sb.sh(new, "systemctl is-enabled consul nomad hashistack-scheduled-events; "
                       "systemctl is-active consul nomad hashistack-scheduled-events")
        assert r.stdout.split() == ["enabled"] * 3 + ["active"] * 3, r.stdout
        leader = ""
        for _ in range(30):
            leader = sb.sh(new, "curl -s http://127.0.0.1:8500/v1/status/leader").stdout.strip()
            if leader.strip('"'):
                break
            time.sleep(2)
        assert leader.strip('"'), leader
        assert "hashistack-boot" in sb.sh(new, "journalctl -t hashistack-boot --no-pager").stdout

        # already converged: the roles change nothing on it (same bytes, users, dirs, units, link, services)
        out = _converge(tmp_path, sb, new_ip, settings)
        recap = out.split("PLAY RECAP")[-1]
        changed = [blk.splitlines()[0] for blk in out.split("TASK [")[1:] if "\nchanged:" in blk]
        assert "changed=0" in recap and "failed=0" in recap, (changed, recap)

        # an identity without access to the vault it is told to read: the boot stops there, agents not started
        other = "hs" + uuid.uuid4().hex[:12]
        vault2 = KeyVaultManagementClient(cred, sub, **kw).vaults.begin_create_or_update(RG, other, {
            "location": LOC, "properties": {"tenantId": arm.endpoint["tenant_id"],
                                            "sku": {"family": "A", "name": "standard"}, "enableRbacAuthorization": True}}).result()
        grant(auth, sub, vault2.id, SECRETS_OFFICER, arm.endpoint["principal_id"])
        denied = _render(tmp_path, dict(settings, boot_payload_vault_name=other, boot_payload_secrets_wait=4))["user_data"]
        hosts = {h["name"] for h in sb.cli_json("list")}
        compute.virtual_machine_scale_sets.begin_create_or_update(
            RG, "boot-servers", _model(arm, ssh_key, vnet, 3, denied)).result(timeout=300)
        third = next(h["name"] for h in sb.cli_json("list") if h["name"] not in hosts)
        doc = _wait_boot(sb, third, 180)
        assert doc.get("state") == "failed" and doc["failed_step"] == "secrets", doc
        msg = doc["steps"][-1]["message"]
        assert "HTTP 403" in msg and "ForbiddenByRbac" in msg and f"'Key Vault Secrets User' on vault {other}" in msg, msg
        assert [s["ok"] for s in doc["steps"]] == [True, True, False]
        r = sb.sh(third, "systemctl is-active consul nomad; test -e /etc/consul.d/secrets.hcl || echo no-secrets")
        assert r.stdout.split() == ["inactive", "inactive", "no-secrets"], r.stdout
        assert "step secrets FAILED" in sb.sh(third, "journalctl -t hashistack-boot --no-pager").stdout
    finally:
        mirror.terminate()
        mirror.wait(timeout=30)

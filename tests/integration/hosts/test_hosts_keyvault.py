"""A scale-set instance (a real sandbox host) reads a Key Vault secret the way the boot path will: an IMDS token
for https://vault.azure.net, then the data plane at https://<vault>.vault.azure.net with curl and with python3's
stdlib - no Azure CLI, no sandbox-only path. Only with Key Vault Secrets User on the vault; a vault created after
the host booted resolves too."""

from __future__ import annotations

import base64
import json
import uuid

import pytest
from hosts_helpers import grant

pytestmark = [pytest.mark.hosts, pytest.mark.xdist_group("sandbox-hosts")]

RG = "rg-hosts-kv"
LOC = "westeurope"
PREFIX = "10.131.0.0/16"  # a subnet no other sandbox test uses
SECRETS_OFFICER = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"
SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
READ = r"""
import json, sys, urllib.request
vault, name = sys.argv[1], sys.argv[2]
tok = json.load(urllib.request.urlopen(urllib.request.Request(
    "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fvault.azure.net",
    headers={"Metadata": "true"})))["access_token"]
req = urllib.request.Request(f"https://{vault}.vault.azure.net/secrets/{name}?api-version=7.4",
                             headers={"Authorization": "Bearer " + tok})
try:
    print(json.load(urllib.request.urlopen(req))["value"])
except urllib.error.HTTPError as e:
    print(e.code, json.load(e)["error"].get("innererror", {}).get("code"))
"""


def _vault(kv, arm, name):
    return kv.vaults.begin_create_or_update(RG, name, {"location": LOC, "properties": {
        "tenantId": arm.endpoint["tenant_id"], "sku": {"family": "A", "name": "standard"},
        "enableRbacAuthorization": True}}).result()


def test_instance_reads_a_secret_with_its_managed_identity(emu):
    from azure.keyvault.secrets import SecretClient
    from azure.mgmt.authorization import AuthorizationManagementClient
    from azure.mgmt.compute import ComputeManagementClient
    from azure.mgmt.keyvault import KeyVaultManagementClient
    from azure.mgmt.network import NetworkManagementClient
    from azure.mgmt.resource.resources import ResourceManagementClient
    arm, sb = emu
    cred, kw, sub = arm.credential(), arm.client_kwargs(), arm.subscription_id
    ResourceManagementClient(cred, sub, **kw).resource_groups.create_or_update(RG, {"location": LOC})
    kv = KeyVaultManagementClient(cred, sub, **kw)
    auth = AuthorizationManagementClient(cred, sub, **kw)
    name = "hs" + uuid.uuid4().hex[:12]
    vault = _vault(kv, arm, name)
    grant(auth, sub, vault.id, SECRETS_OFFICER, arm.endpoint["principal_id"])
    SecretClient(vault.properties.vault_uri, cred, connection_verify=arm.ca_path,
                 proxies={"https": arm.endpoint["vault_proxy"]}).set_secret("gossip", "s3cr3t-value")

    net = NetworkManagementClient(cred, sub, **kw)
    vnet = net.virtual_networks.begin_create_or_update(RG, "vnet", {"location": LOC, "properties": {
        "addressSpace": {"addressPrefixes": [PREFIX]},
        "subnets": [{"name": "default", "properties": {"addressPrefix": "10.131.1.0/24"}}]}}).result()
    key = open(sb.cli("ssh-key").stdout.strip() + ".pub").read().strip()
    compute = ComputeManagementClient(cred, sub, **kw)
    compute.virtual_machine_scale_sets.begin_create_or_update(RG, "kv", {
        "location": LOC, "identity": {"type": "SystemAssigned"},
        "sku": {"name": "Standard_B2s", "tier": "Standard", "capacity": 1},
        "properties": {"upgradePolicy": {"mode": "Manual"}, "virtualMachineProfile": {
            "osProfile": {"computerNamePrefix": "kv", "adminUsername": "azureuser",
                          "customData": base64.b64encode(b"#cloud-config\n{}\n").decode(),
                          "linuxConfiguration": {"disablePasswordAuthentication": True, "ssh": {"publicKeys": [
                              {"path": "/home/azureuser/.ssh/authorized_keys", "keyData": key}]}}},
            "storageProfile": {"imageReference": {"publisher": "Debian", "offer": "debian-12", "sku": "12",
                                                  "version": "latest"}},
            "networkProfile": {"networkInterfaceConfigurations": [{"name": "nic", "properties": {
                "primary": True, "ipConfigurations": [{"name": "ip", "properties": {
                    "subnet": {"id": vnet.subnets[0].id}}}]}}]}}}}).result(timeout=300)
    host = sb.cli_json("list")[0]["name"]
    principal = next(i["principal_id"] for i in arm.instances() if i["vmss_name"] == "kv")
    sb.sh(host, "cat > /root/read.py <<'EOF'\n" + READ + "\nEOF")

    # no role on the vault yet: the data plane refuses the identity
    assert sb.sh(host, f"python3 /root/read.py {name} gossip").stdout.split() == ["403", "ForbiddenByRbac"]
    grant(auth, sub, vault.id, SECRETS_USER, principal)
    r = sb.sh(host, f"python3 /root/read.py {name} gossip")
    assert r.stdout.strip() == "s3cr3t-value", r.stdout + r.stderr
    # the same with curl (what a boot script without python has)
    curl = ("tok=$(curl -s -H Metadata:true 'http://169.254.169.254/metadata/identity/oauth2/token?"
            "api-version=2018-02-01&resource=https://vault.azure.net' | python3 -c 'import json,sys;"
            "print(json.load(sys.stdin)[\"access_token\"])'); "
            f"curl -s -H \"Authorization: Bearer $tok\" 'https://{name}.vault.azure.net/secrets/gossip?api-version=7.4'")
    assert json.loads(sb.sh(host, curl).stdout)["value"] == "s3cr3t-value"
    # a vault created after the host booted resolves as well
    later = "hs" + uuid.uuid4().hex[:12]
    _vault(kv, arm, later)
    r = sb.sh(host, f"getent hosts {later}.vault.azure.net")
    assert r.returncode == 0 and r.stdout.split()[0] == "10.131.1.1"  # the subnet's gateway (DNAT to the emulator)
    assert sb.sh(host, f"python3 /root/read.py {later} gossip").stdout.split() == ["403", "ForbiddenByRbac"]

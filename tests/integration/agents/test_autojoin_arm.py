"""Cloud auto-join against the ARM emulator (sandbox/arm): the scale set's managed identity, limited to
Reader on its resource group, is enough to find the scale set's instances (provider=azure
resource_group=.. vm_scale_set=..)."""

from __future__ import annotations

import ipaddress
import uuid

import pytest

from sandbox.agents import autojoin
from sandbox.agents.testing import JsonServer

LOC = "westeurope"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"


class _FakeImds(JsonServer):
    """IMDS managed identity endpoint handing out the emulator's token for one principal."""

    def __init__(self, arm, principal):
        self.calls = []
        self.arm, self.principal = arm, principal
        super().__init__()

    def get(self, url, query, headers):
        self.calls.append((url.geturl(), headers.get("Metadata")))
        if headers.get("Metadata") != "true":
            return 400, {"error": "invalid_request"}
        return 200, self.arm.identity_token(self.principal)


def _vmss_body(subnet_id, capacity):
    return {"location": LOC, "sku": {"name": "Standard_D2s_v3", "tier": "Standard", "capacity": capacity},
            "identity": {"type": "SystemAssigned"}, "tags": {"cluster": "agents-test", "role": "server"},
            "properties": {"upgradePolicy": {"mode": "Manual"}, "virtualMachineProfile": {
                "osProfile": {"computerNamePrefix": "srv", "adminUsername": "azureuser",
                              "linuxConfiguration": {"disablePasswordAuthentication": True, "ssh": {"publicKeys": [
                                  {"path": "/home/azureuser/.ssh/authorized_keys", "keyData": "ssh-ed25519 AAAAC3 test"}]}}},
                "storageProfile": {"imageReference": {"publisher": "Debian", "offer": "debian-12", "sku": "12-gen2",
                                                      "version": "latest"}},
                "networkProfile": {"networkInterfaceConfigurations": [{"name": "nic", "properties": {
                    "primary": True, "ipConfigurations": [{"name": "ipc", "properties": {"subnet": {"id": subnet_id}}}]}}]}}}}


@pytest.mark.slow
def test_scale_set_discovery_with_managed_identity(arm, monkeypatch):
    from azure.mgmt.authorization import AuthorizationManagementClient
    from azure.mgmt.compute import ComputeManagementClient
    from azure.mgmt.network import NetworkManagementClient
    from azure.mgmt.resource.resources import ResourceManagementClient

    cred, kw, sub = arm.credential(), arm.client_kwargs(), arm.subscription_id
    res = ResourceManagementClient(cred, sub, **kw)
    net = NetworkManagementClient(cred, sub, **kw)
    comp = ComputeManagementClient(cred, sub, **kw)
    auth = AuthorizationManagementClient(cred, sub, **kw)
    rg = f"agents-{uuid.uuid4().hex[:8]}"
    res.resource_groups.create_or_update(rg, {"location": LOC})
    imds = None
    try:
        vnet = net.virtual_networks.begin_create_or_update(rg, "vnet", {
            "location": LOC, "properties": {"addressSpace": {"addressPrefixes": ["10.42.0.0/16"]},
                                            "subnets": [{"name": "servers", "properties": {"addressPrefix": "10.42.1.0/24"}}]}}
        ).result()
        vmss = comp.virtual_machine_scale_sets.begin_create_or_update(rg, "servers", _vmss_body(vnet.subnets[0].id, 3)).result()
        principal = vmss.identity.principal_id
        auth.role_assignments.create(f"/subscriptions/{sub}/resourceGroups/{rg}", str(uuid.uuid4()), {"properties": {
            "roleDefinitionId": f"/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{READER}",
            "principalId": principal, "principalType": "ServicePrincipal"}})
        expected = sorted((n.ip_configurations[0].private_ip_address
                           for n in net.network_interfaces.list_virtual_machine_scale_set_network_interfaces(rg, "servers")),
                          key=ipaddress.ip_address)
        assert len(expected) == 3

        imds = _FakeImds(arm, principal)
        monkeypatch.setenv("HASHISTACK_SANDBOX_IMDS_URL", imds.url)
        monkeypatch.setenv("HASHISTACK_SANDBOX_ARM_URL", arm.endpoint["resource_manager"])
        monkeypatch.setenv("SSL_CERT_FILE", str(arm.ca_path))
        got = autojoin.resolve(f"provider=azure resource_group={rg} vm_scale_set=servers subscription_id={sub}")
        assert sorted(got, key=ipaddress.ip_address) == expected
        assert imds.calls and imds.calls[0][1] == "true" and "/metadata/identity/oauth2/token" in imds.calls[0][0]
        # a scale set the identity may not read: the error says why
        with pytest.raises(autojoin.DiscoverError) as e:
            autojoin.resolve(f"provider=azure resource_group=other-{rg} vm_scale_set=servers subscription_id={sub}")
        assert "HTTP 4" in str(e.value)
    finally:
        if imds:
            imds.close()
        res.resource_groups.begin_delete(rg).result()

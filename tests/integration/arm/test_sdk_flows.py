"""The real azure-identity / azure-mgmt-* clients, default pipeline (bearer token, retry policy,
LRO pollers), against the emulator."""
from __future__ import annotations

import ipaddress
import json
import os
import time
import uuid

import pytest
import requests
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError
from azure.mgmt.compute.models import VirtualMachineScaleSetVM, VirtualMachineScaleSetVMProtectionPolicy

from sandbox.arm.testing import ArmEmulator

from .armwire import Clients

LOC = "westeurope"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"


def network(az, rg, prefix="10.10.0.0/16", subnet="10.10.1.0/24", name="vnet"):
    """Bodies are given in ARM's JSON shape (the SDK sends dicts as they are)."""
    nsg = az.network.network_security_groups.begin_create_or_update(rg, "nsg", {
        "location": LOC, "properties": {"securityRules": [{"name": "ssh", "properties": {
            "protocol": "Tcp", "access": "Allow", "direction": "Inbound", "priority": 100,
            "sourceAddressPrefix": "*", "sourcePortRange": "*", "destinationAddressPrefix": "*",
            "destinationPortRange": "22"}}]}}).result()
    vnet = az.network.virtual_networks.begin_create_or_update(rg, name, {
        "location": LOC, "properties": {"addressSpace": {"addressPrefixes": [prefix]}, "subnets": [
            {"name": "nodes", "properties": {"addressPrefix": subnet, "networkSecurityGroup": {"id": nsg.id}}}]}}
    ).result()
    return vnet.subnets[0]


def vmss_model(subnet_id, capacity=3, size="Standard_D2s_v3", mode=None, custom_data="I2Nsb3VkLWNvbmZpZwo=",
               policy="Manual"):
    props = {"upgradePolicy": {"mode": policy},
             "virtualMachineProfile": {
                 "osProfile": {"computerNamePrefix": "node", "adminUsername": "azureuser", "customData": custom_data,
                               "linuxConfiguration": {"disablePasswordAuthentication": True, "ssh": {
                                   "publicKeys": [{"path": "/home/azureuser/.ssh/authorized_keys",
                                                   "keyData": "ssh-ed25519 AAAAC3 test"}]}}},
                 "storageProfile": {"imageReference": {"publisher": "Debian", "offer": "debian-12", "sku": "12-gen2",
                                                       "version": "latest"}},
                 "networkProfile": {"networkInterfaceConfigurations": [{"name": "nic", "properties": {
                     "primary": True, "ipConfigurations": [{"name": "ipc", "properties": {"subnet": {"id": subnet_id}}}]}}]}}}
    if mode == "Flexible":
        props.update(orchestrationMode="Flexible", platformFaultDomainCount=1, singlePlacementGroup=False)
        props["virtualMachineProfile"]["networkProfile"]["networkApiVersion"] = "2020-11-01"
        del props["upgradePolicy"]
    return {"location": LOC, "sku": {"name": size, "tier": "Standard", "capacity": capacity},
            "identity": {"type": "SystemAssigned"}, "tags": {"cluster": "c1", "role": "server"}, "properties": props}


def nic_ips(az, rg, vmss):
    nics = az.network.network_interfaces.list_virtual_machine_scale_set_network_interfaces(rg, vmss)
    return sorted((n.ip_configurations[0].private_ip_address for n in nics), key=ipaddress.ip_address)


# -- sign-in ---------------------------------------------------------------------------------------------
def test_sign_in_with_secret_and_wrong_secret(arm):
    token = arm.credential().get_token(arm.resource_manager + ".default")
    assert token.token and token.expires_on > time.time() + 600
    with pytest.raises(ClientAuthenticationError) as err:
        arm.credential(secret="not-the-secret").get_token(arm.resource_manager + ".default")
    assert "AADSTS7000215" in str(err.value)


def test_arm_rejects_missing_and_invalid_bearer(arm):
    url = f"{arm.resource_manager}subscriptions/{arm.subscription_id}/resourcegroups?api-version=2022-09-01"
    r = requests.get(url, verify=arm.ca_path, timeout=30)
    assert r.status_code == 401 and r.json()["error"]["code"] == "AuthenticationFailed"
    assert "WWW-Authenticate" in r.headers
    r = requests.get(url, verify=arm.ca_path, timeout=30, headers={"Authorization": "Bearer abc.def.ghi"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "InvalidAuthenticationToken"


def test_metadata_unknown_routes_and_case_insensitive_paths(arm, az):
    md = requests.get(arm.resource_manager + "metadata/endpoints?api-version=2015-01-01", verify=arm.ca_path,
                      timeout=30).json()
    assert md["resourceManager"] == arm.resource_manager
    assert md["authentication"]["loginEndpoint"].rstrip("/") == arm.endpoint["authority"]
    token = arm.credential().get_token(arm.resource_manager + ".default").token
    h = {"Authorization": f"Bearer {token}"}
    r = requests.get(f"{arm.resource_manager}subscriptions/{arm.subscription_id}/providers/Microsoft.Compute/"
                     "nonsense?api-version=1999-01-01", headers=h, verify=arm.ca_path, timeout=30)
    assert r.status_code == 404 and r.headers["Content-Type"].startswith("application/json")
    assert r.json()["error"]["code"] == "InvalidResourceType"
    r = requests.get(f"{arm.resource_manager}SUBSCRIPTIONS/{arm.subscription_id}/providers/microsoft.COMPUTE/"
                     f"locations/{LOC}/usages?api-version=2024-07-01", headers=h, verify=arm.ca_path, timeout=30)
    assert r.status_code == 200
    r = requests.get(f"{arm.resource_manager}SUBSCRIPTIONS/{arm.subscription_id}/providers/microsoft.COMPUTE/"
                     f"locations/{LOC}/usages?api-version=1999-01-01", headers=h, verify=arm.ca_path, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["code"] == "NoRegisteredProviderFound"
    assert any(e["api_version"] == "1999-01-01" and e["path"].startswith("/SUBSCRIPTIONS") for e in arm.requests())
    r = requests.get(f"{arm.resource_manager}subscriptions/{arm.subscription_id}/resourcegroups", headers=h,
                     verify=arm.ca_path, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["code"] == "MissingApiVersionParameter"


# -- the main flow -----------------------------------------------------------------------------------------
def test_scale_set_lifecycle(arm, az, rg):
    subnet = network(az, rg)
    poller = az.compute.virtual_machine_scale_sets.begin_create_or_update(rg, "servers", vmss_model(subnet.id))
    vmss = poller.result()
    assert vmss.provisioning_state == "Succeeded"
    assert vmss.identity.principal_id and vmss.identity.tenant_id == arm.endpoint["tenant_id"]
    assert vmss.virtual_machine_profile.os_profile.custom_data is None  # write-only, as in ARM

    vms = list(az.compute.virtual_machine_scale_set_vms.list(rg, "servers", expand="instanceView"))
    assert [v.instance_id for v in vms] == ["0", "1", "2"]
    assert all(v.latest_model_applied and v.instance_view.statuses[-1].code == "PowerState/running" for v in vms)
    assert [v.os_profile.computer_name for v in vms] == ["node000000", "node000001", "node000002"]
    ips = nic_ips(az, rg, "servers")
    assert ips == ["10.10.1.4", "10.10.1.5", "10.10.1.6"]
    assert all(ipaddress.ip_address(i) in ipaddress.ip_network(subnet.address_prefix) for i in ips)

    # scale out, then in: instance ids and addresses continue without collision, freed ones are reused
    az.compute.virtual_machine_scale_sets.begin_update(rg, "servers", {"sku": {"capacity": 5}}).result()
    assert nic_ips(az, rg, "servers") == [f"10.10.1.{i}" for i in range(4, 9)]
    az.compute.virtual_machine_scale_sets.begin_update(rg, "servers", {"sku": {"capacity": 2}}).result()
    left = [v.instance_id for v in az.compute.virtual_machine_scale_set_vms.list(rg, "servers")]
    assert left == ["0", "1"]  # Default scale-in policy removes the highest instance ids
    assert nic_ips(az, rg, "servers") == ["10.10.1.4", "10.10.1.5"]
    az.compute.virtual_machine_scale_sets.begin_update(rg, "servers", {"sku": {"capacity": 3}}).result()
    assert nic_ips(az, rg, "servers") == ["10.10.1.4", "10.10.1.5", "10.10.1.6"]

    # instance operations are LROs that finish
    vms = az.compute.virtual_machine_scale_set_vms
    vms.begin_restart(rg, "servers", "0").result()
    vms.begin_reimage(rg, "servers", "1").result()
    vms.begin_power_off(rg, "servers", "0").result()
    assert vms.get_instance_view(rg, "servers", "0").statuses[-1].code == "PowerState/stopped"
    vms.begin_start(rg, "servers", "0").result()
    vms.begin_delete(rg, "servers", "1").result()
    assert az.compute.virtual_machine_scale_sets.get(rg, "servers").sku.capacity == 2
    with pytest.raises(ResourceNotFoundError):
        vms.get(rg, "servers", "1")

    # usages tell the truth: 2 x D2s_v3
    usage = {u.name.value: u.current_value for u in az.compute.usage.list(LOC)}
    assert usage["standardDSv3Family"] >= 4 and usage["cores"] >= 4

    # delete cascades: scale set, instances, NICs, network
    az.resource.resource_groups.begin_delete(rg).result()
    assert not az.resource.resource_groups.check_existence(rg)
    assert not [i for i in arm.instances() if f"/resourceGroups/{rg}/" in i["id"]]
    with pytest.raises(ResourceNotFoundError):
        az.compute.virtual_machine_scale_sets.get(rg, "servers")


def test_model_update_and_manual_upgrade(az, rg):
    subnet = network(az, rg)
    az.compute.virtual_machine_scale_sets.begin_create_or_update(rg, "ss", vmss_model(subnet.id, 2)).result()
    az.compute.virtual_machine_scale_sets.begin_update(rg, "ss", {"properties": {"virtualMachineProfile": {
        "osProfile": {"customData": "bmV3Cg=="}}}}).result()
    vms = list(az.compute.virtual_machine_scale_set_vms.list(rg, "ss"))
    assert [v.latest_model_applied for v in vms] == [False, False]
    az.compute.virtual_machine_scale_sets.begin_update_instances(rg, "ss", {"instanceIds": ["1"]}).result()
    vms = list(az.compute.virtual_machine_scale_set_vms.list(rg, "ss"))
    assert [v.latest_model_applied for v in vms] == [False, True]
    stale = az.compute.virtual_machine_scale_set_vms.list(rg, "ss", filter="properties/latestModelApplied eq false")
    assert [v.instance_id for v in stale] == ["0"]


def test_rolling_upgrade_status(az, rg):
    subnet = network(az, rg)
    az.compute.virtual_machine_scale_sets.begin_create_or_update(rg, "roll", vmss_model(subnet.id, 2)).result()
    az.compute.virtual_machine_scale_set_rolling_upgrades.begin_start_os_upgrade(rg, "roll").result()
    status = az.compute.virtual_machine_scale_set_rolling_upgrades.get_latest(rg, "roll")
    assert status.running_status.code == "Completed"
    assert status.progress.successful_instance_count == 2


def test_protection_from_scale_in(az, rg):
    subnet = network(az, rg)
    az.compute.virtual_machine_scale_sets.begin_create_or_update(rg, "prot", vmss_model(subnet.id, 3)).result()
    vm = az.compute.virtual_machine_scale_set_vms.get(rg, "prot", "2")
    az.compute.virtual_machine_scale_set_vms.begin_update(rg, "prot", "2", VirtualMachineScaleSetVM(
        location=LOC, protection_policy=VirtualMachineScaleSetVMProtectionPolicy(protect_from_scale_in=True))).result()
    assert vm.instance_id == "2"
    az.compute.virtual_machine_scale_sets.begin_update(rg, "prot", {"sku": {"capacity": 2}}).result()
    assert [v.instance_id for v in az.compute.virtual_machine_scale_set_vms.list(rg, "prot")] == ["0", "2"]


def test_flexible_orchestration(az, rg):
    subnet = network(az, rg)
    model = vmss_model(subnet.id, 2, mode="Flexible")
    vmss = az.compute.virtual_machine_scale_sets.begin_create_or_update(rg, "flex", model).result()
    assert vmss.orchestration_mode == "Flexible"
    flt = f"'virtualMachineScaleSet/id' eq '{vmss.id}'"
    vms = list(az.compute.virtual_machines.list(rg, filter=flt, expand="instanceView"))
    assert len(vms) == 2 and all(v.virtual_machine_scale_set.id == vmss.id for v in vms)
    assert all(v.instance_view.statuses[-1].code == "PowerState/running" for v in vms)
    nics = list(az.network.network_interfaces.list(rg))
    assert sorted(n.ip_configurations[0].private_ip_address for n in nics) == ["10.10.1.4", "10.10.1.5"]
    assert {n.virtual_machine.id.lower() for n in nics} == {v.id.lower() for v in vms}
    az.compute.virtual_machines.begin_delete(rg, vms[0].name).result()
    assert az.compute.virtual_machine_scale_sets.get(rg, "flex").sku.capacity == 1
    assert len(list(az.network.network_interfaces.list(rg))) == 1
    uniform = vmss_model(subnet.id, 1)
    uniform["properties"]["orchestrationMode"] = "Uniform"  # a PUT that leaves it out keeps Flexible
    with pytest.raises(HttpResponseError) as err:  # orchestration mode is immutable
        az.compute.virtual_machine_scale_sets.begin_create_or_update(rg, "flex", uniform)
    assert err.value.error.code == "PropertyChangeNotAllowed"


# -- validation and quota ------------------------------------------------------------------------------
def test_validation_errors(az, rg):
    subnet = network(az, rg)
    vmss = az.compute.virtual_machine_scale_sets

    def code_of(name, model):
        with pytest.raises(HttpResponseError) as err:
            vmss.begin_create_or_update(rg, name, model)
        return err.value.status_code, err.value.error.code

    assert code_of("bad name!", vmss_model(subnet.id)) == (400, "InvalidResourceName")
    assert code_of("ok", vmss_model(subnet.id, size="Standard_Nope_v9")) == (400, "InvalidParameter")
    assert code_of("ok", vmss_model(subnet.id, capacity=5000)) == (400, "InvalidParameter")
    assert code_of("ok", vmss_model(subnet.id + "-missing")) == (400, "InvalidResourceReference")
    with pytest.raises(HttpResponseError) as err:
        az.network.virtual_networks.begin_create_or_update(rg, "vnet2", {
            "location": LOC, "properties": {"addressSpace": {"addressPrefixes": ["10.20.0.0/16"]},
                                            "subnets": [{"name": "a", "properties": {"addressPrefix": "10.30.0.0/24"}}]}})
    assert err.value.error.code == "NetcfgInvalidSubnet"


def test_quota_exceeded_has_the_real_message(arm, az, rg):
    subnet = network(az, rg)
    arm.set_quotas({LOC: {"standardDSv3Family": 10, "cores": 100}})
    try:
        az.compute.virtual_machine_scale_sets.begin_create_or_update(rg, "q", vmss_model(subnet.id, 4)).result()
        with pytest.raises(HttpResponseError) as err:
            az.compute.virtual_machine_scale_sets.begin_update(rg, "q", {"sku": {"capacity": 6}}).result()
        assert err.value.status_code == 409 and err.value.error.code == "OperationNotAllowed"
        used = {u.name.value: u for u in az.compute.usage.list(LOC)}["standardDSv3Family"]
        assert used.limit == 10
        message = err.value.error.message
        assert message.startswith("Operation could not be completed as it results in exceeding approved "
                                  "standardDSv3Family Cores quota. Additional details - Deployment Model: Resource "
                                  f"Manager, Location: {LOC}, Current Limit: 10, Current Usage: {used.current_value}, "
                                  f"Additional Required: 4, (Minimum) New Limit Required: {used.current_value + 4}.")
        arm.set_quotas({LOC: {"standardDSv3Family": 1000, "cores": used.current_value + 2}})
        with pytest.raises(HttpResponseError) as err:
            az.compute.virtual_machine_scale_sets.begin_update(rg, "q", {"sku": {"capacity": 6}}).result()
        assert "exceeding approved Total Regional Cores quota" in err.value.error.message
    finally:
        arm.set_quotas({LOC: {"standardDSv3Family": 100, "cores": 100}})


# -- faults -----------------------------------------------------------------------------------------------
def test_sdk_retry_policy_survives_429_and_500(arm, az, rg):
    subnet = network(az, rg)
    az.compute.virtual_machine_scale_sets.begin_create_or_update(rg, "f", vmss_model(subnet.id, 1)).result()
    mark = arm.mark()
    arm.fault(429, path=f"/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachineScaleSets/f$", method="GET",
              count=2, retry_after=1)
    assert az.compute.virtual_machine_scale_sets.get(rg, "f").name == "f"
    arm.fault(500, path=f"/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachineScaleSets/f$", method="PATCH",
              count=2)
    az.compute.virtual_machine_scale_sets.begin_update(rg, "f", {"tags": {"x": "y"}}).result()
    statuses = [(e["method"], e["status"]) for e in arm.requests(mark) if e["path"].endswith("/f")]
    assert statuses[:3] == [("GET", 429), ("GET", 429), ("GET", 200)]
    assert [s for m, s in statuses if m == "PATCH"] == [500, 500, 200]


# -- managed identity -------------------------------------------------------------------------------------
class StaticToken:
    def __init__(self, token, expires_on):
        self._token = AccessToken(token, int(expires_on))

    def get_token(self, *scopes, **kwargs):
        return self._token


def test_managed_identity_limited_by_role_assignment(arm, az, rg):
    subnet = network(az, rg)
    vmss = az.compute.virtual_machine_scale_sets.begin_create_or_update(rg, "mi", vmss_model(subnet.id, 1)).result()
    principal = vmss.identity.principal_id
    scope = f"/subscriptions/{arm.subscription_id}/resourceGroups/{rg}"
    az.auth.role_assignments.create(scope, str(uuid.uuid4()), {"properties": {
        "roleDefinitionId": f"/subscriptions/{arm.subscription_id}/providers/Microsoft.Authorization/"
                            f"roleDefinitions/{READER}", "principalId": principal,
        "principalType": "ServicePrincipal"}})
    tok = arm.identity_token(principal)
    assert tok["token_type"] == "Bearer" and tok["resource"] == arm.resource_manager
    mi = Clients(arm, StaticToken(tok["access_token"], tok["expires_on"]))
    assert mi.compute.virtual_machine_scale_sets.get(rg, "mi").identity.principal_id == principal
    assert len(list(mi.network.network_interfaces.list_virtual_machine_scale_set_network_interfaces(rg, "mi"))) == 1
    with pytest.raises(HttpResponseError) as err:
        mi.compute.virtual_machine_scale_sets.begin_update(rg, "mi", {"tags": {"a": "b"}})
    assert err.value.status_code == 403 and err.value.error.code == "AuthorizationFailed"
    assert f"does not have authorization to perform action 'Microsoft.Compute/virtualMachineScaleSets/write' over " \
           f"scope '{scope}/providers/Microsoft.Compute/virtualMachineScaleSets/mi'" in err.value.error.message
    with pytest.raises(HttpResponseError) as err:  # outside the assignment's scope
        list(mi.resource.resource_groups.list())
    assert err.value.status_code == 403


# -- a private emulator: restart, paging and the backend hook ---------------------------------------------
@pytest.fixture(scope="module")
def private(tmp_path_factory):
    log = tmp_path_factory.mktemp("backend") / "calls.jsonl"
    emu = ArmEmulator(page_size=4, provisioning_seconds=0.2, extra_args=[
        "--backend", "tests.integration.arm.recording_backend:RecordingBackend",
        "--hosts-opt", f"log={log}", "--hosts-opt", "delay=0.5"])
    emu.start()
    emu.calls = log
    yield emu
    emu.cleanup()


def backend_calls(emu):
    if not os.path.exists(emu.calls):
        return []
    with open(emu.calls, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def test_backend_hook_paging_and_restart(private):
    az = Clients(private)
    az.resource.resource_groups.create_or_update("keep", {"location": LOC})
    subnet = network(az, "keep")
    poller = az.compute.virtual_machine_scale_sets.begin_create_or_update("keep", "big", vmss_model(subnet.id, 10))
    # the backend takes 0.5 s per instance (8 in parallel): the operation is still running meanwhile
    assert not poller.done()
    poller.result()
    created = [c["payload"] for c in backend_calls(private) if c["event"] == "instance_created"]
    assert len(created) == 10
    inst = created[0]
    for key in ("id", "vmss_id", "vmss_name", "resource_group", "subscription_id", "location", "zone", "vm_size",
                "instance_id", "computer_name", "private_ip", "subnet_prefix", "network_id", "custom_data", "tags",
                "principal_id", "imds"):
        assert key in inst
    assert inst["subnet_prefix"] == "10.10.1.0/24" and inst["custom_data"] == "I2Nsb3VkLWNvbmZpZwo="
    assert inst["imds"]["compute"]["vmScaleSetName"] == "big"
    assert [c["event"] for c in backend_calls(private)][0] == "network_created"

    mark = private.mark()
    vms = list(az.compute.virtual_machine_scale_set_vms.list("keep", "big"))
    assert [v.instance_id for v in vms] == [str(i) for i in range(10)]
    pages = [e for e in private.requests(mark) if e["path"].endswith("/virtualMachines")]
    assert len(pages) == 3  # page size 4: nextLink followed twice
    ips_before = nic_ips(az, "keep", "big")

    private.restart()
    az = Clients(private)  # same endpoint, same credentials, state reloaded
    assert nic_ips(az, "keep", "big") == ips_before
    az.compute.virtual_machine_scale_sets.begin_update("keep", "big", {"sku": {"capacity": 11}}).result()
    ips = nic_ips(az, "keep", "big")
    assert len(set(ips)) == 11 and ips[:10] == ips_before
    az.resource.resource_groups.begin_delete("keep").result()
    events = [c["event"] for c in backend_calls(private)]
    assert events.count("instance_deleted") == 11 and events[-1] == "network_deleted"


def test_reset_tells_the_backend_and_keeps_credentials(private):
    az = Clients(private)
    az.resource.resource_groups.create_or_update("gone", {"location": LOC})
    subnet = network(az, "gone", prefix="10.50.0.0/16", subnet="10.50.1.0/24")
    az.compute.virtual_machine_scale_sets.begin_create_or_update("gone", "r", vmss_model(subnet.id, 2)).result()
    before = len(backend_calls(private))
    private.reset()
    events = [c["event"] for c in backend_calls(private)[before:]]
    assert events.count("instance_deleted") == 2 and "network_deleted" in events
    assert not az.resource.resource_groups.check_existence("gone")
    assert [g.name for g in az.resource.resource_groups.list()] == []  # same token still accepted


def test_peering_states_and_backend_events(private):
    az = Clients(private)
    az.resource.resource_groups.create_or_update("peers", {"location": LOC})
    nets = {}
    for name, prefix in (("a", "10.61.0.0/16"), ("b", "10.62.0.0/16")):
        nets[name] = az.network.virtual_networks.begin_create_or_update("peers", name, {
            "location": LOC, "properties": {"addressSpace": {"addressPrefixes": [prefix]}}}).result()
    before = len(backend_calls(private))
    peer = az.network.virtual_network_peerings
    body = {"properties": {"remoteVirtualNetwork": {"id": nets["b"].id}, "allowVirtualNetworkAccess": True}}
    assert peer.begin_create_or_update("peers", "a", "a-b", body).result().peering_state == "Initiated"
    back = {"properties": {"remoteVirtualNetwork": {"id": nets["a"].id}, "allowVirtualNetworkAccess": True}}
    assert peer.begin_create_or_update("peers", "b", "b-a", back).result().peering_state == "Connected"
    assert peer.get("peers", "a", "a-b").peering_state == "Connected"
    peer.begin_create_or_update("peers", "a", "a-b", body).result()  # idempotent: no second peering event
    peer.begin_delete("peers", "a", "a-b").result()
    assert peer.get("peers", "b", "b-a").peering_state == "Disconnected"
    events = [c["event"] for c in backend_calls(private)[before:]]
    assert events == ["networks_peered", "networks_unpeered"]
    overlapping = az.network.virtual_networks.begin_create_or_update("peers", "c", {
        "location": LOC, "properties": {"addressSpace": {"addressPrefixes": ["10.61.128.0/17"]}}}).result()
    with pytest.raises(HttpResponseError) as err:
        peer.begin_create_or_update("peers", "a", "a-c", {"properties": {
            "remoteVirtualNetwork": {"id": overlapping.id}}})
    assert err.value.error.code == "VnetAddressSpacesOverlap"
    az.resource.resource_groups.begin_delete("peers").result()


def test_operation_resumes_after_a_crash(tmp_path):
    """kill -9 in the middle of a scale-set creation: the restarted emulator finishes the job and the
    SDK poller, still polling the same URL, sees it succeed."""
    log = tmp_path / "calls.jsonl"
    emu = ArmEmulator(state_dir=str(tmp_path / "state"), provisioning_seconds=0.2, extra_args=[
        "--backend", "tests.integration.arm.recording_backend:RecordingBackend",
        "--hosts-opt", f"log={log}", "--hosts-opt", "delay=1.0", "--backend-parallelism", "1"])
    emu.calls = str(log)
    try:
        emu.start()
        az = Clients(emu)
        az.resource.resource_groups.create_or_update("crash", {"location": LOC})
        subnet = network(az, "crash")
        poller = az.compute.virtual_machine_scale_sets.begin_create_or_update("crash", "c", vmss_model(subnet.id, 3))
        time.sleep(1.8)  # one instance handed to the backend, the state file flushed
        emu.proc.kill()
        emu.proc.wait()
        emu.start()
        assert poller.result().provisioning_state == "Succeeded"
        created = {c["payload"]["instance_id"] for c in backend_calls(emu) if c["event"] == "instance_created"}
        assert created == {"0", "1", "2"}
        assert len(nic_ips(Clients(emu), "crash", "c")) == 3
    finally:
        emu.cleanup()


def test_generic_resource_listing_and_providers(az, rg):
    network(az, rg)
    names = {r.name for r in az.resource.resources.list_by_resource_group(rg)}
    assert names == {"vnet", "nsg"}  # top-level resources only (no subnets)
    nsgs = az.resource.resources.list_by_resource_group(
        rg, filter="resourceType eq 'Microsoft.Network/networkSecurityGroups'")
    assert [r.name for r in nsgs] == ["nsg"]
    assert az.resource.providers.get("Microsoft.Compute").registration_state == "Registered"


def test_failed_boot_fails_the_operation(private):
    az = Clients(private)
    az.resource.resource_groups.create_or_update("failing", {"location": LOC})
    subnet = network(az, "failing", prefix="10.70.0.0/16", subnet="10.70.1.0/24")
    model = vmss_model(subnet.id, 2)
    model["tags"]["fail-boot"] = "1"
    with pytest.raises(HttpResponseError) as err:
        az.compute.virtual_machine_scale_sets.begin_create_or_update("failing", "f", model).result()
    assert "did not boot" in str(err.value)
    assert az.compute.virtual_machine_scale_sets.get("failing", "f").provisioning_state == "Failed"
    states = {v.instance_id: v.provisioning_state for v in az.compute.virtual_machine_scale_set_vms.list("failing", "f")}
    assert states == {"0": "Succeeded", "1": "Failed"}
    az.resource.resource_groups.begin_delete("failing").result()


def test_image_change_reimages_through_the_backend(private):
    az = Clients(private)
    az.resource.resource_groups.create_or_update("img", {"location": LOC})
    subnet = network(az, "img", prefix="10.80.0.0/16", subnet="10.80.1.0/24")
    model = vmss_model(subnet.id, 2, policy="Automatic")
    az.compute.virtual_machine_scale_sets.begin_create_or_update("img", "auto", model).result()
    before = len(backend_calls(private))
    az.compute.virtual_machine_scale_sets.begin_update("img", "auto", {"properties": {"virtualMachineProfile": {
        "storageProfile": {"imageReference": {"version": "12.20250101.1"}}}}}).result()
    reimaged = sorted(c["payload"]["instance_id"] for c in backend_calls(private)[before:]
                      if c["event"] == "instance_reimaged")
    assert reimaged == ["0", "1"]
    assert all(v.latest_model_applied for v in az.compute.virtual_machine_scale_set_vms.list("img", "auto"))
    before = len(backend_calls(private))
    az.compute.virtual_machine_scale_set_rolling_upgrades.begin_start_os_upgrade("img", "auto").result()
    events = [c["event"] for c in backend_calls(private)[before:]]
    assert events == ["instance_reimaged", "instance_reimaged"]  # one batch at a time, once each
    az.resource.resource_groups.begin_delete("img").result()


def test_many_concurrent_clients(arm, az, rg):
    from concurrent.futures import ThreadPoolExecutor

    subnet = network(az, rg)
    az.compute.virtual_machine_scale_sets.begin_create_or_update(rg, "many", vmss_model(subnet.id, 3)).result()
    token = arm.credential().get_token(arm.resource_manager + ".default").token
    url = (f"{arm.resource_manager}subscriptions/{arm.subscription_id}/resourceGroups/{rg}/providers/"
           "Microsoft.Compute/virtualMachineScaleSets/many/virtualMachines/{}?api-version=2024-07-01")

    def get(i):  # a new connection (TLS handshake) per request, 200 at once
        return requests.get(url.format(i % 3), headers={"Authorization": f"Bearer {token}"}, verify=arm.ca_path,
                            timeout=60).status_code
    with ThreadPoolExecutor(200) as pool:
        assert set(pool.map(get, range(400))) == {200}

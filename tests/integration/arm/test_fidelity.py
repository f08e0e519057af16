"""The emulator behaves as ARM for clients other than the collection (issue 16): each test drives one
point with a client nobody on the project wrote (the Azure SDK's own flows, the SubscriptionClient,
the request shape of azure.azcollection's azure_rm inventory) or ARM's raw wire."""
from __future__ import annotations

import json
import time
import uuid

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.compute.models import Sku, VirtualMachineScaleSet
from azure.mgmt.network.models import Subnet
from azure.mgmt.resource.subscriptions import SubscriptionClient

from sandbox.arm import quotas
from sandbox.arm.testing import ArmEmulator, check_request_logs

from .armwire import Wire
from .test_sdk_flows import LOC, READER, StaticToken, network, vmss_model


@pytest.fixture(scope="module")
def w(arm):
    return Wire(arm)


def identity_with_reader_on(arm, az, rg, subnet_id):
    """A scale set's managed identity (capacity 0) and a function that gives it Reader on ``rg``."""
    vmss = az.compute.virtual_machine_scale_sets.begin_create_or_update(rg, "mi", vmss_model(subnet_id, 0)).result()
    principal = vmss.identity.principal_id

    def grant():
        az.auth.role_assignments.create(f"/subscriptions/{arm.subscription_id}/resourceGroups/{rg}", str(uuid.uuid4()),
                                        {"properties": {"roleDefinitionId": f"/subscriptions/{arm.subscription_id}/"
                                                        f"providers/Microsoft.Authorization/roleDefinitions/{READER}",
                                                        "principalId": principal, "principalType": "ServicePrincipal"}})
    tok = arm.identity_token(principal)
    return StaticToken(tok["access_token"], tok["expires_on"]), grant


# -- sign-in discovery -----------------------------------------------------------------------------------
def test_sign_in_discovery_lists_subscriptions_with_any_assignment(arm, az, rg):
    kw = arm.client_kwargs()
    client = SubscriptionClient(arm.credential(), **kw)
    subs = list(client.subscriptions.list())
    assert [s.subscription_id for s in subs] == [arm.subscription_id]  # the Owner assignment on the subscription
    assert subs[0].tenant_id == arm.endpoint["tenant_id"] and subs[0].state == "Enabled"
    assert [t.tenant_id for t in client.tenants.list()] == [arm.endpoint["tenant_id"]]
    # an identity whose only assignment is on a resource group still finds its subscription; none: nothing
    token, grant = identity_with_reader_on(arm, az, rg, network(az, rg).id)
    mi = SubscriptionClient(token, **kw)
    assert list(mi.subscriptions.list()) == []
    with pytest.raises(ResourceNotFoundError):
        mi.subscriptions.get(arm.subscription_id)
    grant()
    assert [s.subscription_id for s in mi.subscriptions.list()] == [arm.subscription_id]
    assert mi.subscriptions.get(arm.subscription_id).display_name == subs[0].display_name
    assert any(loc.name == LOC for loc in mi.subscriptions.list_locations(arm.subscription_id))
    assert [t.tenant_id for t in mi.tenants.list()] == [arm.endpoint["tenant_id"]]


# -- scale-set updates -----------------------------------------------------------------------------------
def test_get_change_put_round_trip_of_a_scale_set(arm, az, rg):
    subnet = network(az, rg)
    vmss_ops = az.compute.virtual_machine_scale_sets
    vmss_ops.begin_create_or_update(rg, "rt", vmss_model(subnet.id, 2)).result()
    model = vmss_ops.get(rg, "rt")  # every default and read-only value the service reports, echoed back
    model.tags["owner"] = "ops"
    model.sku.capacity = 3
    updated = vmss_ops.begin_create_or_update(rg, "rt", model).result()
    assert updated.sku.capacity == 3 and updated.tags["owner"] == "ops"
    assert updated.platform_fault_domain_count == 5
    vms = list(az.compute.virtual_machine_scale_set_vms.list(rg, "rt"))
    assert len(vms) == 3 and all(v.latest_model_applied for v in vms)  # no model change: none outdated
    # customData is write-only (never on GET): the round trip keeps the scale set's
    mine = [i for i in arm.instances() if i["vmss_name"] == "rt" and i["resource_group"] == rg]
    assert len(mine) == 3 and {i["custom_data"] for i in mine} == {"I2Nsb3VkLWNvbmZpZwo="}
    # a real change of an immutable property is refused with ARM's error
    model = vmss_ops.get(rg, "rt")
    model.platform_fault_domain_count = 2
    with pytest.raises(HttpResponseError) as err:
        vmss_ops.begin_create_or_update(rg, "rt", model)
    assert err.value.status_code == 400 and err.value.error.code == "PropertyChangeNotAllowed"
    assert err.value.error.target == "platformFaultDomainCount"


def test_put_of_location_and_sku_changes_capacity(arm, az, rg):
    subnet = network(az, rg)
    vmss_ops = az.compute.virtual_machine_scale_sets
    before = vmss_ops.begin_create_or_update(rg, "scale", vmss_model(subnet.id, 1)).result()
    # azure-cli's `az vmss scale`: VirtualMachineScaleSet(location=..., sku=...) to create_or_update
    after = vmss_ops.begin_create_or_update(rg, "scale", VirtualMachineScaleSet(
        location=before.location, sku=Sku(name=before.sku.name, tier=before.sku.tier, capacity=3))).result()
    assert after.sku.capacity == 3
    assert after.virtual_machine_profile.os_profile.computer_name_prefix == "node"
    assert after.tags == before.tags and after.identity.principal_id == before.identity.principal_id
    assert len(list(az.compute.virtual_machine_scale_set_vms.list(rg, "scale"))) == 3


# -- api-versions ----------------------------------------------------------------------------------------
def test_api_versions_enforced_with_arm_error_bodies(arm, az, w, rg):
    subnet = network(az, rg)
    az.compute.virtual_machine_scale_sets.begin_create_or_update(rg, "nics", vmss_model(subnet.id, 1)).result()
    views = f"/subscriptions/{arm.subscription_id}/resourceGroups/{rg}/providers/Microsoft.Compute/" \
            "virtualMachineScaleSets/nics"
    for path in ("/networkInterfaces", "/virtualMachines/0/networkInterfaces"):
        assert w.call("GET", views + path, api_version="2018-10-01").status_code == 200
        r = w.call("GET", views + path, api_version="2024-05-01")
        assert r.status_code == 400, r.text
        err = r.json()["error"]
        assert err["code"] == "NoRegisteredProviderFound"
        rtype = "virtualMachineScaleSets" + path.replace("/0", "")
        assert err["message"].startswith(
            f"No registered resource provider found for location '{LOC}' and API version '2024-05-01' for type "
            f"'{rtype}'. The supported api-versions are '2017-03-30, 2018-10-01'. The supported locations are '")
    # the SDK's own call of the view sends 2018-10-01 and works
    assert len(list(az.network.network_interfaces.list_virtual_machine_scale_set_network_interfaces(rg, "nics"))) == 1
    # a resource type that has the version answers; ARM's own endpoints answer InvalidApiVersionParameter
    assert w.call("GET", views, api_version="2026-04-01").status_code == 200
    r = w.call("GET", f"/subscriptions/{arm.subscription_id}/resourceGroups/{rg}", api_version="2023-02-01")
    assert r.status_code == 400 and r.json()["error"]["code"] == "InvalidApiVersionParameter"
    message = r.json()["error"]["message"]
    assert message.startswith("The api-version '2023-02-01' is invalid. The supported versions are '2025-04-01,")
    assert ",2015-11-01'." in message
    # the provider registration lists the versions the emulator enforces
    prov = az.resource.providers.get("Microsoft.Compute")
    nic_type = next(t for t in prov.resource_types if t.resource_type == "virtualMachineScaleSets/networkInterfaces")
    assert nic_type.api_versions == ["2018-10-01", "2017-03-30"]


def test_request_log_check_catches_an_unknown_version(tmp_path):
    """The check the suite runs on its request log (tests/conftest.py) fails for a version the table
    lacks, sent by the collection (User-Agent hashistack…), and passes for the others."""
    logs = tmp_path / "requests"
    with ArmEmulator(request_log=str(logs)) as emu:
        token = emu.credential().get_token(emu.resource_manager + ".default").token
        for version, agent in (("2025-04-01", "hashistack.azure azsdk-python"), ("2099-01-01", "hashistack.azure"),
                               ("2099-01-01", "python-requests")):
            requests.get(f"{emu.resource_manager}subscriptions/{emu.subscription_id}/resourcegroups",
                         params={"api-version": version}, verify=emu.ca_path, timeout=30,
                         headers={"Authorization": f"Bearer {token}", "User-Agent": agent})
    checked, problems = check_request_logs(str(logs))
    assert len(checked) == 2  # the third was not sent by the collection
    assert len(problems) == 1 and "api-version=2099-01-01" in problems[0] and "Microsoft.Resources/resourceGroups" \
        in problems[0]


# -- POST /batch -----------------------------------------------------------------------------------------
def _batch_item(arm, path, version):
    """A request as azure.azcollection's azure_rm inventory puts it in a batch (absolute url, uuid name)."""
    return {"httpMethod": "GET", "name": str(uuid.uuid4()), "url": f"{arm.resource_manager}{path.lstrip('/')}"
                                                                    f"?api-version={version}"}


def test_batch_answers_each_request(arm, az, w, rg):
    subnet = network(az, rg)
    az.compute.virtual_machine_scale_sets.begin_create_or_update(rg, "b", vmss_model(subnet.id, 1)).result()
    base = f"subscriptions/{arm.subscription_id}/resourceGroups/{rg}/providers/Microsoft.Compute/" \
           "virtualMachineScaleSets"
    items = [_batch_item(arm, base, "2024-07-01"), _batch_item(arm, base + "/missing", "2024-07-01"),
             _batch_item(arm, base + "/b/networkInterfaces", "2024-05-01"),
             {"httpMethod": "GET", "name": "rel", "relativeUrl": f"/{base}/b/virtualMachines?api-version=2024-07-01"}]
    mark = arm.mark()
    r = w.call("POST", "/batch", {"requests": items}, api_version="2015-11-01")
    assert r.status_code == 200, r.text
    answers = r.json()["responses"]
    assert [a["name"] for a in answers] == [i["name"] for i in items]
    assert [a["httpStatusCode"] for a in answers] == [200, 404, 400, 200]
    assert [v["name"] for v in answers[0]["content"]["value"]] == ["b"]
    assert answers[1]["content"]["error"]["code"] == "ResourceNotFound"
    assert answers[2]["content"]["error"]["code"] == "NoRegisteredProviderFound"
    assert answers[3]["content"]["value"][0]["instanceId"] == "0"
    assert all(a["contentLength"] == len(json.dumps(a["content"])) for a in answers)
    inner = [e for e in arm.requests(mark) if "batch" in e]
    assert sorted(e["batch"] for e in inner) == sorted(i["name"] for i in items)  # each logged on its own


def test_batch_over_twenty_is_accepted_and_polled(arm, w):
    path = f"subscriptions/{arm.subscription_id}/resourcegroups"
    items = [_batch_item(arm, path, "2025-04-01") for _ in range(25)]
    r = w.call("POST", "/batch", {"requests": items}, api_version="2015-11-01")
    assert r.status_code == 202 and "Retry-After" in r.headers
    deadline = time.time() + 60
    while True:
        poll = w.get(r.headers["Location"])
        if poll.status_code != 202 or time.time() > deadline:
            break
        time.sleep(0.1)
    assert poll.status_code == 200
    assert [a["httpStatusCode"] for a in poll.json()["responses"]] == [200] * 25


def test_batch_limits_and_rbac(arm, az, w, rg):
    path = f"subscriptions/{arm.subscription_id}/resourcegroups"
    too_many = [_batch_item(arm, path, "2025-04-01") for _ in range(501)]
    r = w.call("POST", "/batch", {"requests": too_many}, api_version="2015-11-01")
    assert r.status_code == 400 and "at most 500 requests" in r.json()["error"]["message"]
    bodies = [dict(_batch_item(arm, path + f"/x{i}", "2025-04-01"), httpMethod="PUT", content={"location": LOC})
              for i in range(21)]
    r = w.call("POST", "/batch", {"requests": bodies}, api_version="2015-11-01")
    assert r.status_code == 400 and "at most 20 with a body" in r.json()["error"]["message"]
    assert w.call("POST", "/batch", {"requests": []}, api_version="2099-01-01").status_code == 400
    admin = [{"httpMethod": "POST", "name": "x", "relativeUrl": "/_sandbox/reset"}]  # only ARM requests
    assert w.call("POST", "/batch", {"requests": admin}, api_version="2015-11-01").status_code == 400
    # the inner requests are the caller's: an identity without rights is refused inside the batch
    token, _ = identity_with_reader_on(arm, az, rg, network(az, rg).id)
    r = requests.post(f"{arm.resource_manager}batch", params={"api-version": "2015-11-01"}, verify=arm.ca_path,
                      json={"requests": [_batch_item(arm, path, "2025-04-01")]}, timeout=30,
                      headers={"Authorization": f"Bearer {token.get_token().token}"})
    assert r.status_code == 200 and r.json()["responses"][0]["httpStatusCode"] == 403


# -- catalogue -------------------------------------------------------------------------------------------
def test_catalog_of_sizes_and_images(arm, az, rg):
    sizes = [s.name for s in az.compute.virtual_machine_sizes.list(LOC)]
    assert sizes == quotas.offered(LOC) and "Standard_D2s_v3" in sizes
    assert "Standard_E64_v3" not in [s.name for s in az.compute.virtual_machine_sizes.list("brazilsouth")]
    images = az.compute.virtual_machine_images
    assert "Debian" in [p.name for p in images.list_publishers(LOC)]
    assert [o.name for o in images.list_offers(LOC, "Debian")] == ["debian-12"]
    assert "12-gen2" in [s.name for s in images.list_skus(LOC, "Debian", "debian-12")]
    # a marketplace URN with 'latest', resolved as clients do: the newest version, then that image
    newest = images.list(LOC, "Debian", "debian-12", "12-gen2", orderby="name desc", top=1)
    assert [v.name for v in newest] == ["0.20240701.1"]
    image = images.get(LOC, "Debian", "debian-12", "12-gen2", newest[0].name)
    assert image.os_disk_image.operating_system == "Linux" and image.hyper_v_generation == "V2"
    for call in (lambda: images.list_offers(LOC, "NoSuchPublisher"),
                 lambda: images.list(LOC, "Debian", "debian-12", "no-such-sku"),
                 lambda: images.get(LOC, "Debian", "debian-12", "12-gen2", "9.9.9")):
        with pytest.raises(ResourceNotFoundError) as err:
            call()
        assert err.value.error.code == "NotFound" and err.value.error.message == "Artifact: VMImage was not found."
    # the scale set created from the resolved image runs that version
    model = vmss_model(network(az, rg).id, 1)
    model["properties"]["virtualMachineProfile"]["storageProfile"]["imageReference"]["version"] = "latest"
    az.compute.virtual_machine_scale_sets.begin_create_or_update(rg, "img", model).result()
    vm = next(iter(az.compute.virtual_machine_scale_set_vms.list(rg, "img")))
    assert vm.storage_profile.image_reference.exact_version == newest[0].name


# -- inline subnets ---------------------------------------------------------------------------------------
def test_subnet_created_inline_reaches_succeeded(az, rg):
    vnet = az.network.virtual_networks.begin_create_or_update(rg, "inline", {
        "location": LOC, "properties": {"addressSpace": {"addressPrefixes": ["10.20.0.0/16"]}, "subnets": [
            {"name": "a", "properties": {"addressPrefix": "10.20.1.0/24"}},
            {"name": "b", "properties": {"addressPrefix": "10.20.2.0/24"}}]}}).result()
    assert vnet.provisioning_state == "Succeeded"
    assert [s.provisioning_state for s in vnet.subnets] == ["Succeeded", "Succeeded"]
    assert az.network.subnets.get(rg, "inline", "b").provisioning_state == "Succeeded"
    # and an update that adds one inline
    vnet.subnets.append(Subnet(name="c", address_prefix="10.20.3.0/24"))
    again = az.network.virtual_networks.begin_create_or_update(rg, "inline", vnet).result()
    assert {s.name: s.provisioning_state for s in again.subnets} == {"a": "Succeeded", "b": "Succeeded",
                                                                     "c": "Succeeded"}

"""Microsoft.Compute: virtual machine scale sets (Uniform and Flexible), their instances, rolling
upgrades, usages and resource SKUs. Instance lifecycle goes through the InstanceBackend from LRO jobs."""
from __future__ import annotations

import hashlib
import ipaddress
import json
import math
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from .. import quotas, registry, scheduled_events
from ..backend import InstanceBackend
from ..errors import ArmError, entity_not_found, invalid_parameter, not_found
from ..lro import job
from ..router import RG, SUB, Response, paged, route, type_path
from ..scheduled_events import MIN_NOTICE
from ..util import check_name, deep, get_path, merge_patch, new_guid, normalize_location, now_iso, strip_secrets
from . import catalog, network
from .resources import list_routes, require_rg

NS = "Microsoft.Compute"

# api-versions of the Compute RP (ComputeRP / compute.json: scale sets, their VMs, virtual machines,
# usages, VM sizes, VM images, operations): the ``stable/{version}/`` inputs of every tag in
# azure-rest-api-specs specification/compute/resource-manager/Microsoft.Compute/Compute/readme.md
# (commit 02710b56, up to 2025-04-01; 2016-04-30-preview is its one preview tag) plus the newer folders
# stable/2025-11-01, 2026-03-01 and 2026-04-01 (ComputeRP.json present in the index; azure-mgmt-compute 39
# sends 2026-04-01).
COMPUTE_VERSIONS = (
    "2015-06-15", "2016-03-30", "2016-04-30-preview", "2017-03-30", "2017-12-01", "2018-04-01", "2018-06-01",
    "2018-10-01", "2019-03-01", "2019-07-01", "2019-12-01", "2020-06-01", "2020-12-01", "2021-03-01", "2021-04-01",
    "2021-07-01", "2021-11-01", "2022-03-01", "2022-08-01", "2022-11-01", "2023-03-01", "2023-07-01", "2023-09-01",
    "2024-03-01", "2024-07-01", "2024-11-01", "2025-04-01", "2025-11-01", "2026-03-01", "2026-04-01")
# Resource SKUs live in their own swagger (skus.json): the same readme's stable/2017-09-01, 2019-04-01 and
# 2021-07-01 inputs (2017-03-30 was still in compute.json).
SKU_VERSIONS = ("2017-03-30", "2017-09-01", "2019-04-01", "2021-07-01")
# The scale-set NIC / public IP views are Microsoft.Network operations on Microsoft.Compute paths, pinned
# to one api-version in the network specs: ``ApiVersionVmssParameter`` = 2018-10-01 in every
# Microsoft.Network/stable/{2018-10-01 ... 2024-07-01}/vmssNetworkInterface.json (azure-mgmt-network 33
# sends 2018-10-01), 2017-03-30 in the folders before it. They do not exist at later versions.
VMSS_NETWORK_VERSIONS = ("2017-03-30", "2018-10-01")
PROVIDER = registry.provider(NS, "azure-rest-api-specs compute readme.md tags + stable folders")
for _t in ("virtualMachineScaleSets", "virtualMachineScaleSets/virtualMachines", "virtualMachines", "locations",
           "locations/operations", "locations/usages", "locations/vmSizes", "locations/publishers"):
    PROVIDER.resource_type(_t, COMPUTE_VERSIONS)
PROVIDER.resource_type("skus", SKU_VERSIONS, "azure-rest-api-specs compute skus.json stable versions")
for _t in ("virtualMachineScaleSets/networkInterfaces", "virtualMachineScaleSets/virtualMachines/networkInterfaces",
           "virtualMachineScaleSets/publicIPAddresses"):
    PROVIDER.resource_type(_t, VMSS_NETWORK_VERSIONS, "azure-rest-api-specs network vmssNetworkInterface.json "
                                                      "ApiVersionVmssParameter")
VMSS = "Microsoft.Compute/virtualMachineScaleSets"
VMSS_VM = "Microsoft.Compute/virtualMachineScaleSets/virtualMachines"
VM = "Microsoft.Compute/virtualMachines"
C = type_path(RG, VMSS, "vmss")
CV = C + r"/virtualMachines/(?P<iid>[^/]+)"
VMR = type_path(RG, VM, "vm")
ACTIONS = ("restart", "reimage", "reimageall", "start", "poweroff", "deallocate", "redeploy")


# -- lookups ---------------------------------------------------------------------------------------
def vmss_id(app, rg, name) -> str:
    return f"/subscriptions/{app.sub}/resourceGroups/{rg}/providers/{VMSS}/{name}"


def get_vmss_rec(app, rg, name) -> dict:
    rec = app.store.get(vmss_id(app, rg, name))
    if rec is None:
        require_rg(app, rg)
        raise not_found(VMSS, name, rg)
    return rec


def get_vm_rec(app, rg, vmss, iid) -> dict:
    vrec = get_vmss_rec(app, rg, vmss)
    _uniform_only(vrec)
    rec = app.store.get(vrec["body"]["id"] + "/virtualMachines/" + iid)
    if rec is None:
        raise entity_not_found()
    return rec


def _uniform_only(vrec) -> None:
    if vrec["body"]["properties"].get("orchestrationMode") == "Flexible":
        raise ArmError(400, "OperationNotAllowed",
                       "This operation is not supported for Virtual Machine Scale Sets with orchestration mode "
                       "'Flexible'. Use the Virtual Machines API on the scale set's virtual machines instead.")


def instances_of(app, vrec) -> list[dict]:
    if vrec["body"]["properties"].get("orchestrationMode") == "Flexible":
        vid = vrec["body"]["id"].lower()
        return [r for r in app.store.of_type(VM, vrec["body"]["id"].rsplit("/providers/", 1)[0])
                if r["x"].get("vmss_id", "").lower() == vid]
    return app.store.of_type(VMSS_VM, vrec["body"]["id"])


def usage(app, location: str) -> dict:
    """Quota usage in a location: instances holding cores (deallocated ones hold none), scale sets."""
    sizes = [r["x"]["size"] for t in (VMSS_VM, VM) for r in app.store.of_type(t)
             if r["body"]["location"] == location and r["x"].get("power") != "deallocated"]
    sets = len([r for r in app.store.of_type(VMSS) if r["body"]["location"] == location])
    return quotas.usage(sizes, sets)


@registry.principal_source
def managed_identities(app):
    """System-assigned identities of scale sets (Flexible members share their set's) and the user-assigned
    identities they reference."""
    for t in (VMSS, VM):
        for r in app.store.of_type(t):
            ident = r["body"].get("identity") or {}
            if ident.get("principalId"):
                yield {"principalId": ident["principalId"], "clientId": r["x"].get("client_id", ""),
                       "resourceId": r["body"]["id"]}
            for rid, ua in (ident.get("userAssignedIdentities") or {}).items():
                if ua.get("principalId"):
                    yield {"principalId": ua["principalId"], "clientId": ua.get("clientId", ""), "resourceId": rid}


# -- validation ------------------------------------------------------------------------------------
def _validate_profile(app, rid: str, body: dict, location: str, flexible: bool) -> None:
    profile = get_path(body, "properties.virtualMachineProfile")
    if profile is None:
        if flexible:
            if (body.get("sku") or {}).get("capacity", 0):
                raise invalid_parameter("Parameter 'sku.capacity' must be 0 when 'virtualMachineProfile' is not "
                                        "specified.", "sku.capacity")
            return
        raise invalid_parameter("Required parameter 'virtualMachineProfile' is missing (null).",
                                "virtualMachineProfile")
    os_profile = profile.get("osProfile") or {}
    if not os_profile.get("computerNamePrefix") and not flexible:
        raise invalid_parameter("Required parameter 'osProfile.computerNamePrefix' is missing (null).",
                                "osProfile.computerNamePrefix")
    if not os_profile.get("adminUsername"):
        raise invalid_parameter("Required parameter 'osProfile' is missing (null).", "osProfile")
    prefix = os_profile.get("computerNamePrefix") or ""
    if len(prefix) > 58:
        raise invalid_parameter("Computer name prefix cannot be longer than 58 characters.",
                                "osProfile.computerNamePrefix")
    net = profile.get("networkProfile") or {}
    if flexible and not net.get("networkApiVersion"):
        raise invalid_parameter("Required parameter 'networkProfile.networkApiVersion' is missing (null).",
                                "networkProfile.networkApiVersion")
    cfgs = net.get("networkInterfaceConfigurations") or []
    if not cfgs:
        raise invalid_parameter("Required parameter 'networkProfile.networkInterfaceConfigurations' is missing "
                                "(null).", "networkProfile.networkInterfaceConfigurations")
    for cfg in cfgs:
        props = cfg.get("properties") or {}
        if not props.get("ipConfigurations"):
            raise invalid_parameter("Required parameter 'networkInterfaceConfiguration.ipConfigurations' is missing "
                                    "(null).", "networkInterfaceConfiguration.ipConfigurations")
        nsg = (props.get("networkSecurityGroup") or {}).get("id")
        if nsg and app.store.get(nsg) is None:
            raise network.invalid_reference(app, nsg, rid)
        for ipc in props.get("ipConfigurations") or []:
            subnet = get_path(ipc, "properties.subnet.id")
            if not subnet:
                raise invalid_parameter("Required parameter 'ipConfiguration.subnet' is missing (null).",
                                        "ipConfiguration.subnet")
            srec = app.store.get(subnet)
            if srec is None:
                raise network.invalid_reference(app, subnet, rid)
            vnet = app.store.get(subnet.rsplit("/subnets/", 1)[0])
            if vnet and vnet["body"]["location"] != location:
                raise network.invalid_reference(app, subnet, rid)


_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")


def iso8601_seconds(value) -> float | None:
    """Seconds of an ISO 8601 duration (``PT5M``, ``PT900S``, ``PT1H``), None when it is not one."""
    m = _DURATION.match(value) if isinstance(value, str) and value not in ("P", "") else None
    if not m:
        return None
    d, h, mi, sec = (float(g) if g else 0.0 for g in m.groups())
    return ((d * 24 + h) * 60 + mi) * 60 + sec


def _unknown_member(member: str, owner: str) -> ArmError:
    """What CRP answers for a property its api-version does not have (as the docs' troubleshooting quotes)."""
    return ArmError(400, "BadRequest", f"Could not find member '{member}' on object of type '{owner}'.")


def _validate_scheduling(req, spec: dict) -> None:
    """scheduledEventsProfile and scaleInPolicy as CRP takes them (terminate-notification and scale-in-policy
    docs, ComputeRP TerminateNotificationProfile / OSImageNotificationProfile / ScaleInPolicy): both need
    api-version 2019-03-01 or later in the request that sends them."""
    body = req.body if isinstance(req.body, dict) else {}
    old_api = (req.api_version or "9") < "2019-03-01"
    if old_api and get_path(body, "properties.virtualMachineProfile.scheduledEventsProfile") is not None:
        raise _unknown_member("scheduledEventsProfile", "VirtualMachineProfile")
    if old_api and get_path(body, "properties.scaleInPolicy") is not None:
        raise _unknown_member("scaleInPolicy", "properties")
    profile = get_path(spec, "properties.virtualMachineProfile") or {}
    events = profile.get("scheduledEventsProfile") or {}
    terminate = events.get("terminateNotificationProfile") or {}
    timeout = terminate.get("notBeforeTimeout")
    if timeout is not None:
        seconds = iso8601_seconds(timeout)
        if seconds is None:
            raise invalid_parameter(f"The value '{timeout}' of parameter 'notBeforeTimeout' is not a valid ISO 8601 "
                                    "duration.", "scheduledEventsProfile.terminateNotificationProfile.notBeforeTimeout")
        if not 300 <= seconds <= 900:
            raise invalid_parameter(f"The value '{timeout}' of parameter 'notBeforeTimeout' is out of range. The value "
                                    "must be between 'PT5M' and 'PT15M', inclusive.",
                                    "scheduledEventsProfile.terminateNotificationProfile.notBeforeTimeout")
    if terminate.get("enable") and profile.get("priority") == "Spot":
        raise invalid_parameter("Terminate notifications cannot be enabled on Spot instances.",
                                "scheduledEventsProfile.terminateNotificationProfile.enable")
    os_image = events.get("osImageNotificationProfile") or {}
    if os_image.get("notBeforeTimeout") not in (None, "PT15M"):
        raise invalid_parameter(f"The value '{os_image['notBeforeTimeout']}' of parameter 'notBeforeTimeout' is not "
                                "valid. The value must be 'PT15M'.",
                                "scheduledEventsProfile.osImageNotificationProfile.notBeforeTimeout")
    if os_image.get("enable"):
        raise ArmError(400, "SandboxNotImplemented", "sandbox.arm does not emulate OS image Scheduled Events "
                       "(scheduledEventsProfile.osImageNotificationProfile.enable); leave it out or false.")
    policy = get_path(spec, "properties.scaleInPolicy")
    if policy is not None:
        rules = (policy or {}).get("rules")
        if not rules:
            raise ArmError(400, "BadRequest", "Virtual Machine Scale Sets scale in policy must contain at least one "
                                              "rule.")
        for rule in rules:
            if rule not in ("Default", "NewestVM", "OldestVM"):
                raise invalid_parameter(f"The value '{rule}' of parameter 'scaleInPolicy.rules' is not valid. Valid "
                                        "values are 'Default', 'NewestVM', 'OldestVM'.", "scaleInPolicy.rules")


def _primary_subnet(profile: dict) -> tuple[dict, str, str | None]:
    cfgs = get_path(profile, "networkProfile.networkInterfaceConfigurations") or []
    cfg = next((c for c in cfgs if get_path(c, "properties.primary")), cfgs[0])
    ipcs = get_path(cfg, "properties.ipConfigurations") or []
    ipc = next((i for i in ipcs if get_path(i, "properties.primary")), ipcs[0])
    return cfg, get_path(ipc, "properties.subnet.id"), get_path(cfg, "properties.networkSecurityGroup.id")


def _normalize_profile(profile: dict | None) -> dict | None:
    """Fill the defaults the real service returns (as in the recorded responses)."""
    if profile is None:
        return None
    p = deep(profile)
    osp = p.setdefault("osProfile", {})
    osp.setdefault("secrets", [])
    osp.setdefault("allowExtensionOperations", True)
    osp.setdefault("requireGuestProvisionSignal", True)
    if _is_windows(p):
        wc = osp.setdefault("windowsConfiguration", {})
        wc.setdefault("provisionVMAgent", True)
        wc.setdefault("enableAutomaticUpdates", True)
    else:
        lc = osp.setdefault("linuxConfiguration", {})
        lc.setdefault("disablePasswordAuthentication", "adminPassword" not in osp)
        lc.setdefault("provisionVMAgent", True)
        lc.setdefault("enableVMAgentPlatformUpdates", False)
    sp = p.setdefault("storageProfile", {})
    sp.setdefault("imageReference", {"publisher": "Debian", "offer": "debian-12", "sku": "12-gen2",
                                     "version": "latest"})
    od = sp.setdefault("osDisk", {"createOption": "FromImage"})
    od.setdefault("caching", "ReadWrite")
    od.setdefault("managedDisk", {"storageAccountType": "Standard_LRS"})
    od.setdefault("diskSizeGB", 30)
    for cfg in get_path(p, "networkProfile.networkInterfaceConfigurations") or []:
        props = cfg.setdefault("properties", {})
        props.setdefault("primary", True)
        props.setdefault("enableAcceleratedNetworking", False)
        props.setdefault("dnsSettings", {"dnsServers": []})
        props.setdefault("enableIPForwarding", False)
        for ipc in props.get("ipConfigurations") or []:
            ipc.setdefault("properties", {}).setdefault("privateIPAddressVersion", "IPv4")
    return p


def _is_windows(profile: dict) -> bool:
    """OS type as Azure derives it: explicit configuration first, else the image publisher."""
    osp = profile.get("osProfile") or {}
    if "linuxConfiguration" in osp:
        return False
    if "windowsConfiguration" in osp:
        return True
    return "windows" in (get_path(profile, "storageProfile.imageReference.publisher") or "").lower()


def _model_signature(body: dict) -> str:
    """What makes instances outdated: the size and the profile with the defaults the service fills in,
    so a model read back and sent again (GET -> PUT) is no change."""
    profile = _normalize_profile(get_path(body, "properties.virtualMachineProfile"))
    if profile:
        profile.pop("timeCreated", None)
    return json.dumps([quotas.canonical_size(get_path(body, "sku.name") or ""), profile], sort_keys=True)


# Values the service computes: a client echoing them back (GET -> change -> PUT) changes nothing.
_READ_ONLY = ("id", "name", "type", "etag", "properties.provisioningState", "properties.uniqueId",
              "properties.timeCreated", "properties.virtualMachineProfile.timeCreated")
# Top-level parts of an existing scale set a PUT keeps when it does not send them. CRP treats a PUT of an
# existing scale set this way: a PUT of only location + sku changes the capacity and keeps the model
# (the long-standing capacity change of `az vmss scale`: azure-cli's scale_vmss sends
# VirtualMachineScaleSet(location, sku) to create_or_update).
_KEPT_ON_PUT = ("sku", "tags", "identity", "zones", "plan", "extendedLocation")


def _without_read_only(spec: dict) -> dict:
    spec = deep(spec)
    for dotted in _READ_ONLY:
        *parents, leaf = dotted.split(".")
        holder = get_path(spec, ".".join(parents)) if parents else spec
        if isinstance(holder, dict):
            holder.pop(leaf, None)
    return spec


def _keep_secrets(old_profile: dict | None, profile: dict | None) -> None:
    """Write-only values (adminPassword, customData, extensions' protectedSettings) are never returned on
    GET, so a model sent back without them keeps the ones the scale set has."""
    if not old_profile or not profile:
        return
    old_os, new_os = old_profile.get("osProfile") or {}, profile.get("osProfile")
    if isinstance(new_os, dict):
        for key in ("adminPassword", "customData"):
            if key in old_os and key not in new_os:
                new_os[key] = old_os[key]
    old_ext = {e.get("name"): e for e in get_path(old_profile, "extensionProfile.extensions") or []}
    for ext in get_path(profile, "extensionProfile.extensions") or []:
        before = get_path(old_ext.get(ext.get("name")) or {}, "properties.protectedSettings")
        if before is not None and "protectedSettings" not in (ext.get("properties") or {}):
            ext.setdefault("properties", {})["protectedSettings"] = before


def _put_spec(old_spec: dict, body: dict) -> dict:
    """The spec a PUT leaves on an existing scale set: the request, with what it leaves out kept."""
    spec = _without_read_only(body)
    for key in _KEPT_ON_PUT:
        if key not in spec and key in old_spec:
            spec[key] = deep(old_spec[key])
    props = spec["properties"] = spec.get("properties") or {}
    for key, value in (old_spec.get("properties") or {}).items():
        props.setdefault(key, deep(value))
    _keep_secrets(get_path(old_spec, "properties.virtualMachineProfile"), props.get("virtualMachineProfile"))
    return spec


@route("PUT", C)
def put_vmss(app, req, sub, rg, vmss):
    require_rg(app, rg)
    old = app.store.get(vmss_id(app, rg, vmss))
    body = req.body or {}
    spec = _put_spec(old["x"]["spec"], body) if old else _without_read_only(body)
    return _write_vmss(app, req, rg, vmss, spec, patch=False)


@route("PATCH", C)
def patch_vmss(app, req, sub, rg, vmss):
    rec = get_vmss_rec(app, rg, vmss)
    merged = merge_patch(rec["x"]["spec"], _without_read_only(req.body or {}))
    _keep_secrets(get_path(rec["x"]["spec"], "properties.virtualMachineProfile"),
                  get_path(merged, "properties.virtualMachineProfile"))
    return _write_vmss(app, req, rg, vmss, merged, patch=True)


def _write_vmss(app, req, rg, name, spec, patch):
    check_name(name, 64)
    rid = vmss_id(app, rg, name)
    location = normalize_location(spec.get("location"), VMSS)
    sku = spec.get("sku") or {}
    if not sku.get("name"):
        raise invalid_parameter("Required parameter 'sku' is missing (null).", "sku")
    quotas.check_size(sku["name"], location)
    size = quotas.canonical_size(sku["name"])
    props = spec.get("properties") or {}
    mode = props.get("orchestrationMode") or "Uniform"
    if mode not in ("Uniform", "Flexible"):
        raise invalid_parameter(f"The value '{mode}' of parameter 'orchestrationMode' is not valid.",
                                "orchestrationMode")
    flexible = mode == "Flexible"
    capacity = sku.get("capacity", 0 if flexible else None)
    single_pg = props.get("singlePlacementGroup", not flexible)
    maximum = 100 if (single_pg and not flexible) else 1000
    if not isinstance(capacity, int) or not 0 <= capacity <= maximum:
        raise invalid_parameter(f"The value {capacity} of parameter 'sku.capacity' is out of range. The value must "
                                f"be between 0 and {maximum}, inclusive.", "sku.capacity")
    zones = spec.get("zones") or []
    if any(z not in ("1", "2", "3") for z in zones):
        raise invalid_parameter(f"The zones '{','.join(zones)}' are not valid for location '{location}'. "
                                "Valid zones are 1, 2, 3.", "zones")
    _validate_profile(app, rid, spec, location, flexible)
    _validate_scheduling(req, spec)
    with app.store.lock:
        old = app.store.get(rid)
        if old is None and patch:
            raise not_found(VMSS, name, rg)
        if old:
            _check_immutable(old, spec, location, mode, zones, rg, name)
            if old["body"]["properties"]["provisioningState"] == "Deleting":
                raise ArmError(409, "OperationNotAllowed", f"Operation is not allowed since the Virtual Machine "
                                                           f"Scale Set '{name}' is being deleted.")
        family, cpus, _ = quotas.size_info(size)
        current = len([i for i in instances_of(app, old)]) if old else 0
        old_size = old["x"]["size"] if old else size
        grow = max(0, capacity - current)
        if old and quotas.size_info(old_size) != quotas.size_info(size):
            ofam, ocpus, _ = quotas.size_info(old_size)
            keep = min(current, capacity)
            add = {family: (keep + grow) * cpus - (keep * ocpus if ofam == family else 0)}
            quotas.check(app, location, usage(app, location), add, regional=keep * (cpus - ocpus) + grow * cpus)
        elif grow:
            quotas.check(app, location, usage(app, location), {family: grow * cpus})
        if grow:
            model = get_path(spec, "properties.virtualMachineProfile")
            network.check_free_ips(app, _primary_subnet(model)[1], grow)
        body = _vmss_body(app, rid if not old else old["body"]["id"], spec, location, size, capacity, mode, zones,
                          single_pg, old)
        live = [r for r in sorted(instances_of(app, old), key=lambda r: r["x"]["seq"])
                if r["body"]["properties"]["provisioningState"] != "Deleting"] if old else []
        # a refused scale-in changes nothing: victims are chosen (by the request's scale-in policy) or the
        # request refused before anything is stored
        deleted = _scale_in_victims({"body": body}, live, len(live) - capacity) if capacity < len(live) else []
        model_changed = bool(old) and _model_signature(old["x"]["spec"]) != _model_signature(spec)
        x = old["x"] if old else {"model_version": 1, "next_id": 0, "client_id": new_guid()}
        x["spec"] = deep(spec)
        x["size"] = size
        x["model"] = _normalize_profile(get_path(spec, "properties.virtualMachineProfile"))
        if model_changed:
            x["model_version"] += 1
        rec = app.store.put(body, x)
        created, upgrade = [], []
        if capacity > len(live):
            created = [_new_instance(app, rec) for _ in range(capacity - len(live))]
        for v in deleted:
            v["body"]["properties"]["provisioningState"] = "Deleting"
        policy = get_path(body, "properties.upgradePolicy.mode", "Manual")
        if model_changed and not flexible and policy in ("Automatic", "Rolling"):
            # instances protected from scale-set actions keep their model (instance protection docs)
            upgrade = [r["body"]["id"] for r in live if r not in deleted and r["body"]["id"] not in created
                       and not _protected_from_scale_set_actions(r)]
        app.store.touch()
    events = _schedule_terminate(app, deleted)
    op = app.lro.start(req, NS, location, "vmss_provision",
                       {"vmss": rec["body"]["id"], "create": created, "delete": [d["body"]["id"] for d in deleted],
                        "upgrade": upgrade, "rolling": policy == "Rolling", "events": events}, rec["body"]["id"])
    view = render_vmss(app, rec)
    return Response(200 if old else 201, view, app.lro.headers(op, location=False))


def _check_immutable(old, spec, location, mode, zones, rg, name):
    ob = old["body"]
    if ob["location"] != location:
        raise ArmError(400, "InvalidResourceLocation",
                       f"The resource '{name}' already exists in location '{ob['location']}' in resource group "
                       f"'{rg}'. A resource with the same name cannot be created in location '{location}'. Please "
                       "select a new resource name.")

    def immutable(prop, before, after):
        """Only a real change is refused: a value the scale set has (a default included, as GET reports
        it) sent back unchanged, or not sent at all, is none."""
        if after is not None and before != after:
            raise ArmError(400, "PropertyChangeNotAllowed", f"Changing property '{prop}' is not allowed.",
                           target=prop)
    immutable("orchestrationMode", ob["properties"].get("orchestrationMode", "Uniform"), mode)
    immutable("zones", sorted(ob.get("zones") or []), sorted(zones))
    old_os = get_path(old["x"]["spec"], "properties.virtualMachineProfile.osProfile") or {}
    new_os = get_path(spec, "properties.virtualMachineProfile.osProfile") or {}
    for key in ("computerNamePrefix", "adminUsername"):
        if old_os.get(key) is not None:
            immutable(f"osProfile.{key}", old_os.get(key), new_os.get(key))
    immutable("platformFaultDomainCount", ob["properties"].get("platformFaultDomainCount"),
              get_path(spec, "properties.platformFaultDomainCount"))


def _vmss_body(app, rid, spec, location, size, capacity, mode, zones, single_pg, old) -> dict:
    props = spec.get("properties") or {}
    name = rid.rsplit("/", 1)[1]
    upgrade = deep(props.get("upgradePolicy") or {"mode": "Manual"})
    upgrade.setdefault("mode", "Manual")
    if upgrade["mode"] == "Rolling" or "rollingUpgradePolicy" in upgrade:
        rp = upgrade.setdefault("rollingUpgradePolicy", {})
        for k, v in (("maxBatchInstancePercent", 20), ("maxUnhealthyInstancePercent", 20),
                     ("maxUnhealthyUpgradedInstancePercent", 20), ("pauseTimeBetweenBatches", "PT0S")):
            rp.setdefault(k, v)
    # Properties ARM stores as given are echoed back; the ones it owns are computed below.
    out_props = {k: deep(v) for k, v in props.items()
                 if k not in ("virtualMachineProfile", "provisioningState", "uniqueId", "timeCreated")}
    out_props.update({"singlePlacementGroup": single_pg, "orchestrationMode": mode, "upgradePolicy": upgrade})
    profile = _normalize_profile(props.get("virtualMachineProfile"))
    if profile is not None:
        out_props["virtualMachineProfile"] = strip_secrets(profile)
        out_props["virtualMachineProfile"]["timeCreated"] = old["body"]["properties"].get("timeCreated") if old \
            else now_iso()
    out_props.update({"provisioningState": "Creating" if old is None else "Updating",
                      "overprovision": props.get("overprovision", mode == "Uniform"),
                      "doNotRunExtensionsOnOverprovisionedVMs": props.get("doNotRunExtensionsOnOverprovisionedVMs",
                                                                          False),
                      "uniqueId": old["body"]["properties"]["uniqueId"] if old else new_guid(),
                      "platformFaultDomainCount": props.get("platformFaultDomainCount", 1 if mode == "Flexible" else 5),
                      "timeCreated": old["body"]["properties"]["timeCreated"] if old else now_iso()})
    body = {"name": name, "id": rid, "type": VMSS, "location": location,
            "sku": {"name": size, "tier": (spec.get("sku") or {}).get("tier", "Standard"), "capacity": capacity},
            "etag": f'"{int(old["body"]["etag"].strip(chr(34))) + 1 if old else 1}"', "properties": out_props}
    if spec.get("tags") is not None:
        body["tags"] = deep(spec["tags"])
    if zones:
        body["zones"] = list(zones)
    for key in ("plan", "extendedLocation"):
        if spec.get(key) is not None:
            body[key] = deep(spec[key])
    ident = spec.get("identity")
    if ident and "SystemAssigned" in (ident.get("type") or ""):
        prev = (old["body"].get("identity") or {}) if old else {}
        body["identity"] = {"type": ident["type"], "principalId": prev.get("principalId") or new_guid(),
                            "tenantId": app.identity["tenant_id"]}
        if ident.get("userAssignedIdentities"):
            body["identity"]["userAssignedIdentities"] = {
                k: {"principalId": new_guid(), "clientId": new_guid()} for k in ident["userAssignedIdentities"]}
    elif ident and ident.get("type") == "UserAssigned":
        body["identity"] = {"type": "UserAssigned", "userAssignedIdentities": {
            k: {"principalId": new_guid(), "clientId": new_guid()} for k in ident.get("userAssignedIdentities") or {}}}
    return body


def render_vmss(app, rec) -> dict:
    return deep(rec["body"])


def fault_domain(seq: int) -> int:
    """The platform fault (and update) domain of an instance (its instance view, IMDS and scale-in balancing)."""
    return seq % 5


def _protected_from_scale_set_actions(rec) -> bool:
    return bool(get_path(rec["body"], "properties.protectionPolicy.protectFromScaleSetActions"))


def _protected_from_scale_in(rec) -> bool:
    policy = get_path(rec["body"], "properties.protectionPolicy") or {}
    return bool(policy.get("protectFromScaleIn") or policy.get("protectFromScaleSetActions"))


def pick_scale_in(live: list[dict], count: int, rule: str, zonal: bool) -> list[dict]:
    """The instances a scale-in removes, in order (virtual-machine-scale-sets-scale-in-policy.md). ``live``:
    ``{"seq", "zone", "protected"}`` of every instance (seq = instance id = creation order). Protected
    instances are never picked but count for the balance. Zonal sets are first balanced across zones
    (candidates from the most populated zones that have one); then Default balances fault domains (best
    effort) and takes the highest instance id, NewestVM the newest, OldestVM the oldest. Returns fewer
    than ``count`` when not enough instances are unprotected."""
    def most_populated(candidates, scope, population):
        counts = {}
        for i in scope:
            counts[population(i)] = counts.get(population(i), 0) + 1
        top = max(counts[population(c)] for c in candidates)
        return [c for c in candidates if counts[population(c)] == top]

    def zone(i):
        return i["zone"] or ""

    pool, picked = list(live), []
    while len(picked) < count:
        candidates = [i for i in pool if not i["protected"]]
        if not candidates:
            break
        scope = pool
        if zonal:
            candidates = most_populated(candidates, pool, zone)
            zones = {zone(c) for c in candidates}
            scope = [i for i in pool if zone(i) in zones]
        if rule == "Default":
            candidates = most_populated(candidates, scope, lambda i: fault_domain(i["seq"]))
        choose = min if rule == "OldestVM" else max
        pick = choose(candidates, key=lambda i: i["seq"])
        pool.remove(pick)
        picked.append(pick)
    return picked


def _scale_in_victims(vrec, live: list, count: int) -> list:
    rule = (get_path(vrec["body"], "properties.scaleInPolicy.rules") or ["Default"])[0]
    view = [{"seq": r["x"]["seq"], "zone": r["x"].get("zone"), "protected": _protected_from_scale_in(r), "rec": r}
            for r in live]
    victims = [i["rec"] for i in pick_scale_in(view, count, rule, zonal=bool(vrec["body"].get("zones")))]
    if len(victims) < count:
        free = len([i for i in view if not i["protected"]])
        raise ArmError(409, "OperationNotAllowed",
                       f"Scale-in of {count} instance(s) is not possible: only {free} instance(s) are not "
                       "protected from scale-in.")
    return victims


def _new_instance(app, vrec) -> str:
    """Create one instance record (Creating), its NIC and private IP. Returns its id."""
    x = vrec["x"]
    seq = x["next_id"]
    x["next_id"] += 1
    b = vrec["body"]
    model = x["model"] or {}
    flexible = b["properties"]["orchestrationMode"] == "Flexible"
    name = b["name"]
    zones = b.get("zones") or []
    zone = zones[seq % len(zones)] if zones else None
    rg = b["id"].split("/")[4]
    digest = hashlib.sha256(f"{b['id']}/{seq}".encode()).hexdigest()
    prefix = get_path(model, "osProfile.computerNamePrefix") or name[:9]
    if flexible:
        vm_name = f"{name}_{digest[:8]}"
        rid = f"/subscriptions/{app.sub}/resourceGroups/{rg}/providers/{VM}/{vm_name}"
        computer = f"{prefix}{digest[8:14]}"
        rtype = VM
    else:
        vm_name = f"{name}_{seq}"
        rid = f"{b['id']}/virtualMachines/{seq}"
        computer = prefix + _base36(seq).rjust(6, "0")
        rtype = VMSS_VM
    cfg, subnet_id, nsg = _primary_subnet(model)
    cfg_name = cfg.get("name") or "nic"
    ipc_name = (get_path(cfg, "properties.ipConfigurations") or [{}])[0].get("name") or "ipconfig1"
    if flexible:
        nic_id = f"/subscriptions/{app.sub}/resourceGroups/{rg}/providers/Microsoft.Network/networkInterfaces/" \
                 f"{vm_name}-{cfg_name}"
        nic_type = network.NIC
    else:
        nic_id = f"{rid}/networkInterfaces/{cfg_name}"
        nic_type = network.VMSS_NIC
    ip, prefix_net = network.allocate_ip(app, subnet_id, f"{nic_id}/ipConfigurations/{ipc_name}")
    mac = "00-0D-3A-" + "-".join(digest[i:i + 2].upper() for i in (14, 16, 18))
    subnet_rec = app.store.get(subnet_id)
    ipc_props = get_path(cfg, "properties.ipConfigurations")[0].get("properties") or {}
    nic = network.nic_body(app, nic_id, nic_type, ipc_name, ip, subnet_rec["body"]["id"], rid, nsg,
                           b["location"] if flexible else None, mac, cfg.get("properties") or {}, ipc_props)
    app.store.put(nic, {})
    os_disk = f"{vm_name}_OsDisk_1_{digest[20:52]}"
    vx = {"seq": seq, "vmss_id": b["id"], "model_version": x["model_version"], "model": deep(model),
          "size": x["size"], "ip": ip, "subnet_id": subnet_rec["body"]["id"], "subnet_prefix": prefix_net,
          "nic_id": nic_id, "power": "running", "computer_name": computer, "zone": zone,
          "vm_id": str(uuid.UUID(digest[:32])), "os_disk": os_disk, "created": now_iso()}
    body = {"name": vm_name, "id": rid, "type": rtype, "location": b["location"],
            "properties": {"provisioningState": "Creating"}}
    if b.get("tags"):
        body["tags"] = deep(b["tags"])
    if zone:
        body["zones"] = [zone]
    if not flexible:
        body["instanceId"] = str(seq)
        body["sku"] = {"name": x["size"], "tier": "Standard"}
        body["etag"] = '"1"'
    app.store.put(body, vx)
    return rid


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


# -- instance rendering ----------------------------------------------------------------------------
def _vmss_of(app, rec):
    return app.store.get(rec["x"]["vmss_id"]) if rec["x"].get("vmss_id") else None


def _exact_version(image: dict) -> str:
    """The image version an instance runs: 'latest' is the catalogue's newest version of the sku."""
    if image.get("version") != "latest":
        return image.get("version") or ""
    return catalog.latest_version(image) or "0.20240701.1"


def render_vm(app, rec, instance_view=False, user_data=False) -> dict:
    b = deep(rec["body"])
    x = rec["x"]
    vrec = _vmss_of(app, rec)
    model = x["model"] or {}
    image = deep(get_path(model, "storageProfile.imageReference") or {})
    if image and "id" not in image:
        image["exactVersion"] = _exact_version(image)
    os_disk = get_path(model, "storageProfile.osDisk") or {}
    rg = b["id"].split("/")[4]
    windows = _is_windows(model)
    disk_prefix = f"/subscriptions/{app.sub}/resourceGroups/{rg}/providers/Microsoft.Compute/disks/"
    data_disks = []
    for d in get_path(model, "storageProfile.dataDisks") or []:
        dname = f"{b['name']}_disk{d.get('lun', 0) + 2}_{x['os_disk'][-32:]}"
        data_disks.append({"lun": d.get("lun", 0), "name": dname, "createOption": d.get("createOption", "Empty"),
                           "caching": d.get("caching", "None"),
                           "managedDisk": {"storageAccountType": get_path(d, "managedDisk.storageAccountType",
                                                                          "Standard_LRS"), "id": disk_prefix + dname},
                           "diskSizeGB": d.get("diskSizeGB", 32), "toBeDetached": False})
    storage = {"imageReference": image,
               "osDisk": {"osType": "Windows" if windows else "Linux", "name": x["os_disk"], "createOption": "FromImage",
                          "caching": os_disk.get("caching", "ReadWrite"),
                          "managedDisk": {"storageAccountType": get_path(os_disk, "managedDisk.storageAccountType",
                                                                         "Standard_LRS"),
                                          "id": f"/subscriptions/{app.sub}/resourceGroups/{rg}/providers/"
                                                f"Microsoft.Compute/disks/{x['os_disk']}"},
                          "diskSizeGB": os_disk.get("diskSizeGB", 30), "deleteOption": "Delete"},
               "dataDisks": data_disks}
    osp = strip_secrets(deep(model.get("osProfile") or {}))
    osp.pop("computerNamePrefix", None)
    osp = {"computerName": x["computer_name"], **osp}
    props = b["properties"]
    if b["type"] == VMSS_VM:
        latest = bool(vrec) and x["model_version"] == vrec["x"]["model_version"]
        new_props = {"latestModelApplied": latest, "modelDefinitionApplied": "VirtualMachineScaleSet"}
        if instance_view:
            new_props["instanceView"] = instance_view_body(app, rec)
        new_props.update({
            "networkProfileConfiguration": {"networkInterfaceConfigurations": deep(
                get_path(model, "networkProfile.networkInterfaceConfigurations") or [])},
            "vmId": x["vm_id"], "hardwareProfile": {}, "storageProfile": storage, "osProfile": osp,
            "networkProfile": {"networkInterfaces": [{"id": x["nic_id"]}]},
            "provisioningState": props["provisioningState"], "timeCreated": x["created"]})
        if "protectionPolicy" in props:
            new_props["protectionPolicy"] = props["protectionPolicy"]
    else:
        new_props = {"vmId": x["vm_id"], "hardwareProfile": {"vmSize": x["size"]}, "storageProfile": storage,
                     "osProfile": osp,
                     "networkProfile": {"networkInterfaces": [{"id": x["nic_id"], "properties": {"primary": True,
                                                               "deleteOption": "Delete"}}]},
                     "provisioningState": props["provisioningState"], "timeCreated": x["created"]}
        if vrec:
            new_props["virtualMachineScaleSet"] = {"id": vrec["body"]["id"]}
        if instance_view:
            new_props["instanceView"] = instance_view_body(app, rec)
        ident = (vrec["body"].get("identity") if vrec else None)
        if ident:
            b["identity"] = deep(ident)
    for key in ("diagnosticsProfile", "securityProfile", "additionalCapabilities"):
        if key in model:
            new_props[key] = deep(model[key])
    if user_data and model.get("userData"):
        new_props["userData"] = model["userData"]
    b["properties"] = new_props
    extensions = get_path(model, "extensionProfile.extensions") or []
    if extensions:
        vm_path = f"/subscriptions/{app.sub}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{b['name']}"
        b["resources"] = [{"name": e["name"], "id": f"{vm_path}/extensions/{e['name']}",
                           "type": "Microsoft.Compute/virtualMachines/extensions", "location": b["location"],
                           "properties": {**strip_secrets(deep(e.get("properties") or {})),
                                          "provisioningState": "Succeeded"}} for e in extensions]
    return b


def power_state(app, rec) -> str:
    if type(app.backend).instance_power_state is InstanceBackend.instance_power_state:
        return rec["x"]["power"]  # simulated instances: no need to build the instance dict
    try:
        state = app.backend.instance_power_state(instance_dict(app, rec))
    except Exception:  # noqa: BLE001 - a broken backend must not break reads
        state = None
    return state or rec["x"]["power"]


def instance_view_body(app, rec) -> dict:
    x = rec["x"]
    prov = rec["body"]["properties"]["provisioningState"]
    power = power_state(app, rec)
    display = {"running": "VM running", "stopped": "VM stopped", "deallocated": "VM deallocated",
               "starting": "VM starting", "stopping": "VM stopping", "deallocating": "VM deallocating"}
    statuses = [{"code": f"ProvisioningState/{prov.lower()}", "level": "Info" if prov != "Failed" else "Error",
                 "displayStatus": f"Provisioning {prov.lower()}", "time": x.get("changed", x["created"])}]
    if prov != "Creating":
        statuses.append({"code": f"PowerState/{power}", "level": "Info", "displayStatus": display.get(power, power)})
    vrec = _vmss_of(app, rec)
    view = {}
    if vrec and vrec["body"]["properties"].get("singlePlacementGroup"):
        view["placementGroupId"] = vrec["body"]["properties"]["uniqueId"]
    return view | {"platformUpdateDomain": fault_domain(x["seq"]), "platformFaultDomain": fault_domain(x["seq"]),
            "computerName": x["computer_name"], "osName": "debian", "osVersion": "12",
            "vmAgent": {"vmAgentVersion": "2.9.1.1" if power == "running" else "Unknown",
                        "statuses": [{"code": "ProvisioningState/succeeded", "level": "Info", "displayStatus": "Ready",
                                      "message": "Guest Agent is running", "time": now_iso()}],
                        "extensionHandlers": []},
            "disks": [{"name": x["os_disk"], "statuses": [{"code": "ProvisioningState/succeeded", "level": "Info",
                                                            "displayStatus": "Provisioning succeeded",
                                                            "time": x["created"]}]}],
            "hyperVGeneration": "V2", "statuses": statuses}


def imds_document(app, rec) -> dict:
    x = rec["x"]
    b = rec["body"]
    vrec = _vmss_of(app, rec)
    model = x["model"] or {}
    image = get_path(model, "storageProfile.imageReference") or {}
    osp = model.get("osProfile") or {}
    keys = get_path(osp, "linuxConfiguration.ssh.publicKeys") or []
    tags = b.get("tags") or {}
    rg = b["id"].split("/")[4]
    net = ipaddress.ip_network(x["subnet_prefix"])
    vm_resource = b["id"] if b["type"] == VM else \
        f"/subscriptions/{app.sub}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{b['name']}"
    compute = {
        "azEnvironment": "AzurePublicCloud", "customData": "", "evictionPolicy": "",
        "extendedLocation": {"type": "", "name": ""}, "isHostCompatibilityLayerVm": "false", "licenseType": "",
        "location": b["location"], "name": b["name"], "offer": image.get("offer", ""),
        "osProfile": {"adminUsername": osp.get("adminUsername", ""), "computerName": x["computer_name"],
                      "disablePasswordAuthentication": str(
                          get_path(osp, "linuxConfiguration.disablePasswordAuthentication", True)).lower()},
        "osType": "Windows" if _is_windows(model) else "Linux", "placementGroupId": vrec["body"]["properties"]["uniqueId"] if vrec else "",
        "plan": {"name": "", "product": "", "publisher": ""}, "platformFaultDomain": str(fault_domain(x["seq"])),
        "platformSubFaultDomain": "", "platformUpdateDomain": str(fault_domain(x["seq"])), "priority": "",
        "provider": "Microsoft.Compute", "publicKeys": [{"keyData": k.get("keyData", ""), "path": k.get("path", "")}
                                                       for k in keys],
        "publisher": image.get("publisher", ""), "resourceGroupName": rg, "resourceId": vm_resource,
        "securityProfile": {"secureBootEnabled": "false", "virtualTpmEnabled": "false", "encryptionAtHost": "false"},
        "hostGroup": {"id": ""}, "sku": image.get("sku", ""),
        "storageProfile": {"dataDisks": [
            {"bytesPerSecondThrottle": "0", "caching": d.get("caching", "None"),
             "createOption": d.get("createOption", "Empty"), "diskCapacityBytes": str(d.get("diskSizeGB", 32) << 30),
             "diskSizeGB": str(d.get("diskSizeGB", 32)), "image": {"uri": ""}, "isSharedDisk": "false",
             "isUltraDisk": "false", "lun": str(d.get("lun", 0)),
             "managedDisk": {"id": "", "storageAccountType": get_path(d, "managedDisk.storageAccountType",
                                                                      "Standard_LRS")},
             "name": f"{b['name']}_disk{d.get('lun', 0) + 2}", "opsPerSecondThrottle": "0", "vhd": {"uri": ""},
             "writeAcceleratorEnabled": "false"} for d in get_path(model, "storageProfile.dataDisks") or []],
            "imageReference": {"id": image.get("id", ""),
                                                               "offer": image.get("offer", ""),
                                                               "publisher": image.get("publisher", ""),
                                                               "sku": image.get("sku", ""),
                                                               "version": image.get("version", "")},
                           "osDisk": {"caching": "ReadWrite", "createOption": "FromImage", "diskSizeGB": "30",
                                      "diffDiskSettings": {"option": ""},
                                      "encryptionSettings": {"enabled": "false"}, "image": {"uri": ""},
                                      "managedDisk": {"id": f"/subscriptions/{app.sub}/resourceGroups/{rg}/providers/"
                                                            f"Microsoft.Compute/disks/{x['os_disk']}",
                                                      "storageAccountType": "Standard_LRS"},
                                      "name": x["os_disk"], "osType": "Linux", "vhd": {"uri": ""},
                                      "writeAcceleratorEnabled": "false"},
                           "resourceDisk": {"size": "0"}},
        "subscriptionId": app.sub, "tags": ";".join(f"{k}:{v}" for k, v in tags.items()),
        "tagsList": [{"name": k, "value": v} for k, v in tags.items()], "userData": model.get("userData", ""),
        "version": _exact_version(image) if image and "id" not in image else "",
        "virtualMachineScaleSet": {"id": vrec["body"]["id"] if vrec else ""},
        "vmId": x["vm_id"], "vmScaleSetName": vrec["body"]["name"] if vrec else "", "vmSize": x["size"],
        "zone": x.get("zone") or "", "additionalCapabilities": {"hibernationEnabled": "false"}}
    mac = app.store.get(x["nic_id"])
    network_doc = {"interface": [{
        "ipv4": {"ipAddress": [{"privateIpAddress": x["ip"], "publicIpAddress": ""}],
                 "subnet": [{"address": str(net.network_address), "prefix": str(net.prefixlen)}]},
        "ipv6": {"ipAddress": []},
        "macAddress": (mac["body"]["properties"]["macAddress"] if mac else "").replace("-", "")}]}
    return {"compute": compute, "network": network_doc}


def instance_dict(app, rec) -> dict:
    x = rec["x"]
    b = rec["body"]
    vrec = _vmss_of(app, rec)
    ident = (vrec["body"].get("identity") or {}) if vrec else {}
    return {"id": b["id"], "vmss_id": vrec["body"]["id"] if vrec else None,
            "vmss_name": vrec["body"]["name"] if vrec else None, "resource_group": b["id"].split("/")[4],
            "subscription_id": app.sub, "location": b["location"], "zone": x.get("zone"), "vm_size": x["size"],
            "instance_id": b.get("instanceId", b["name"]), "computer_name": x["computer_name"],
            "private_ip": x["ip"], "subnet_prefix": x["subnet_prefix"],
            "network_id": x["subnet_id"].rsplit("/subnets/", 1)[0],
            "custom_data": get_path(x["model"] or {}, "osProfile.customData"), "tags": deep(b.get("tags") or {}),
            "principal_id": ident.get("principalId"), "imds": imds_document(app, rec)}


def all_instance_dicts(app) -> list:
    return [instance_dict(app, r) for t in (VMSS_VM, VM) for r in app.store.of_type(t)]


# -- jobs ------------------------------------------------------------------------------------------
def _parallel(app, fn, items) -> None:
    if not items:
        return
    with ThreadPoolExecutor(max_workers=max(1, app.config.backend_parallelism)) as pool:
        list(pool.map(fn, items))


def _set_state(app, rec, state: str, power: str | None = None) -> None:
    with app.store.lock:
        rec["body"]["properties"]["provisioningState"] = state
        rec["x"]["changed"] = now_iso()
        if power:
            rec["x"]["power"] = power
        app.store.touch()


def _remove_instance(app, rec) -> None:
    x = rec["x"]
    network.release_ip(app, x["subnet_id"], x["ip"])
    app.store.delete(x["nic_id"])
    app.store.delete(rec["body"]["id"])
    app.events.forget_instance(rec["body"]["id"])


# -- Scheduled Events posted by operations (sandbox/arm/scheduled_events.py) ------------------------
# restart / redeploy of an instance whose scale set is enrolled in Scheduled Events (scheduled-events.md,
# "User-initiated maintenance"; descriptions as the docs and Azure-Samples/scheduled-events-mock-server show)
_USER_EVENTS = {
    "restart": ("Reboot", "userInitiatedReboot", "Virtual machine is going to be restarted as requested by authorized "
                                                 "user."),
    "redeploy": ("Redeploy", "userInitiatedRedeploy", "Virtual machine is going to be redeployed as requested by "
                                                      "authorized user.")}
# what a platform event (admin API) does to its instances when it starts
PLATFORM_EVENTS = {"Freeze": "freeze", "Reboot": "restart", "Redeploy": "redeploy", "Preempt": "evict"}
_PLATFORM_DESCRIPTIONS = {"Freeze": "Virtual machine is being paused because of a memory-preserving Live Migration "
                                    "operation.",
                          "Reboot": "Host server is undergoing maintenance.",
                          "Redeploy": "Virtual machine has encountered a failure.", "Preempt": ""}


def _terminate_notice(rec) -> float | None:
    """Seconds of notice a delete gives this instance: the terminate notification of the model the instance
    runs (a changed scale-set profile applies once the instance is on the latest model), None when off."""
    profile = get_path(rec["x"]["model"] or {}, "scheduledEventsProfile.terminateNotificationProfile") or {}
    if not profile.get("enable"):
        return None
    return iso8601_seconds(profile.get("notBeforeTimeout") or "PT5M")  # the documented default


def _schedule_terminate(app, recs) -> dict:
    """Terminate events for the instances about to be deleted that have the notification on: {id: EventId}."""
    out = {}
    for rec in recs:
        notice = _terminate_notice(rec)
        if notice is not None:
            out[rec["body"]["id"]] = app.events.schedule([rec], "Terminate", notice, "User")
    return out


def _schedule_user_action(app, recs, action: str) -> dict:
    """Reboot / Redeploy events of a user restart / redeploy, for instances of enrolled scale sets: {id: EventId}."""
    if action not in _USER_EVENTS:
        return {}
    event_type, policy, description = _USER_EVENTS[action]
    out = {}
    for rec in recs:
        if not app.events.enrolled(rec):
            continue
        vrec = _vmss_of(app, rec)
        auto = get_path(vrec["body"] if vrec else {}, f"properties.scheduledEventsPolicy.{policy}.automaticallyApprove")
        out[rec["body"]["id"]] = app.events.schedule([rec], event_type, MIN_NOTICE[event_type], "User", description,
                                                     started=bool(auto))
    return out


def post_platform_event(app, req) -> tuple[dict, dict]:
    """Admin API: the platform schedules maintenance (Freeze, Reboot, Redeploy) or a Spot eviction (Preempt) on
    instances of one scale set; it is carried out when approved or at NotBefore. Returns (event, operation)."""
    spec = req.body if isinstance(req.body, dict) else {}
    event_type = spec.get("EventType")
    if event_type not in PLATFORM_EVENTS:
        raise ArmError(400, "BadRequest", f"EventType must be one of {', '.join(PLATFORM_EVENTS)}.")
    ids = spec.get("instances") or ([spec["instance"]] if spec.get("instance") else [])
    recs = [app.store.get(i) for i in ids]
    if not recs or None in recs:
        raise ArmError(404, "NotFound", f"No such instance among {ids}.")
    if len({scheduled_events.group_of(r) for r in recs}) != 1:
        raise ArmError(400, "BadRequest", "One event names instances of one scale set (its placement group).")
    notice = float(spec.get("NotBeforeSeconds", MIN_NOTICE[event_type]))
    event_id = app.events.schedule(recs, event_type, notice, "Platform",
                                   spec.get("Description", _PLATFORM_DESCRIPTIONS[event_type]),
                                   int(spec.get("DurationInSeconds", 5 if event_type == "Freeze" else -1)))
    op = app.lro.start(req, NS, recs[0]["body"]["location"], "platform_event",
                       {"event": event_id, "action": PLATFORM_EVENTS[event_type]}, recs[0]["body"]["id"])
    event = next(e for e in app.events.document(recs[0]["body"]["id"])["Events"] if e["EventId"] == event_id)
    return event, op


@job("vmss_provision")
def vmss_provision(app, op, vmss, create=(), delete=(), upgrade=(), rolling=False, events=None):
    time.sleep(app.config.provisioning_seconds)
    failures = []
    events = events or {}

    def do_create(rid):
        rec = app.store.get(rid)
        if rec is None or rec["body"]["properties"]["provisioningState"] != "Creating":
            return
        try:
            app.backend.instance_created(instance_dict(app, rec))
            _set_state(app, rec, "Succeeded", "running")
        except Exception as exc:  # noqa: BLE001
            _set_state(app, rec, "Failed")
            failures.append(f"{rec['body']['name']}: {exc}")

    def do_delete(rec):
        app.backend.instance_deleted(instance_dict(app, rec))
        _remove_instance(app, rec)

    _parallel(app, do_delete, [r for r in map(app.store.get, delete) if r and r["body"]["id"] not in events])
    app.events.run(op["name"], list(events.values()), lambda recs: _parallel(app, do_delete, recs))
    _parallel(app, do_create, list(create))
    vrec = app.store.get(vmss)
    if vrec is not None and upgrade:
        _upgrade(app, vrec, list(upgrade), rolling)
    if vrec is not None:
        _set_state(app, vrec, "Failed" if failures else "Succeeded")
    if failures:
        raise ArmError(200, "OSProvisioningClientError", "Provisioning of instances failed: " + "; ".join(failures))


def _apply_model(app, vrec, rec, notify: bool = True) -> None:
    """Bring one instance to the scale set's latest model (reimage if the image changed, restart on resize)."""
    old_image = get_path(rec["x"]["model"] or {}, "storageProfile.imageReference")
    old_size = rec["x"]["size"]
    with app.store.lock:
        rec["x"]["model"] = deep(vrec["x"]["model"])
        rec["x"]["model_version"] = vrec["x"]["model_version"]
        rec["x"]["size"] = vrec["x"]["size"]
        if "sku" in rec["body"]:
            rec["body"]["sku"]["name"] = vrec["x"]["size"]
        app.store.touch()
    _set_state(app, rec, "Updating")
    if notify and old_image != get_path(rec["x"]["model"] or {}, "storageProfile.imageReference"):
        app.backend.instance_reimaged(instance_dict(app, rec))
    elif notify and old_size != rec["x"]["size"]:
        app.backend.instance_restarted(instance_dict(app, rec))
    _set_state(app, rec, "Succeeded", "running")


def _upgrade(app, vrec, ids, rolling: bool, reimage: bool = False) -> None:
    recs = [r for r in (app.store.get(i) for i in ids) if r is not None]
    vrec = app.store.get(vrec["body"]["id"]) or vrec

    def one(rec):
        if reimage:  # OS upgrade: latest model, then a fresh OS disk (one reimage)
            _apply_model(app, vrec, rec, notify=False)
            _set_state(app, rec, "Updating")
            app.backend.instance_reimaged(instance_dict(app, rec))
            _set_state(app, rec, "Succeeded", "running")
        else:
            _apply_model(app, vrec, rec)
    if not rolling:
        _parallel(app, one, recs)
        return
    policy = get_path(vrec["body"], "properties.upgradePolicy.rollingUpgradePolicy") or {}
    batch = max(1, math.ceil(len(recs) * policy.get("maxBatchInstancePercent", 20) / 100))
    status = vrec["x"].get("rolling")
    if not status or status["runningStatus"]["code"] != "RollingForward":
        status = start_rolling_status(vrec, len(recs))
    progress = status["progress"]
    for i in range(0, len(recs), batch):
        time.sleep(app.config.provisioning_seconds)
        if vrec["x"].get("rolling_cancel"):
            with app.store.lock:
                status["runningStatus"].update({"code": "Cancelled", "lastAction": "Cancel",
                                                "lastActionTime": now_iso(), "endTime": now_iso()})
                app.store.touch()
            return
        chunk = recs[i:i + batch]
        with app.store.lock:
            progress["inProgressInstanceCount"] = len(chunk)
            progress["pendingInstanceCount"] -= len(chunk)
        _parallel(app, one, chunk)
        with app.store.lock:
            progress["inProgressInstanceCount"] = 0
            progress["successfulInstanceCount"] += len(chunk)
            app.store.touch()
    with app.store.lock:
        status["runningStatus"].update({"code": "Completed", "endTime": now_iso()})
        app.store.touch()


def start_rolling_status(vrec, count: int) -> dict:
    policy = get_path(vrec["body"], "properties.upgradePolicy.rollingUpgradePolicy") or {}
    status = {"policy": deep(policy), "runningStatus": {"code": "RollingForward", "startTime": now_iso(),
                                                        "lastAction": "Start", "lastActionTime": now_iso()},
              "progress": {"successfulInstanceCount": 0, "failedInstanceCount": 0,
                           "inProgressInstanceCount": 0, "pendingInstanceCount": count}}
    vrec["x"]["rolling"] = status
    vrec["x"]["rolling_cancel"] = False
    return status


def _instance_action(app, rec, action: str) -> None:
    inst = instance_dict(app, rec)
    if action in ("restart", "redeploy"):
        _set_state(app, rec, "Updating")
        app.backend.instance_restarted(inst)
        _set_state(app, rec, "Succeeded", "running")
    elif action in ("reimage", "reimageall"):
        _set_state(app, rec, "Updating")
        app.backend.instance_reimaged(inst)
        _set_state(app, rec, "Succeeded", "running")
    elif action == "start":
        if rec["x"]["power"] != "running":
            # stopped and deallocated instances keep their OS disk: they boot the same root again
            app.backend.instance_restarted(inst)
        _set_state(app, rec, "Succeeded", "running")
    elif action in ("poweroff", "deallocate"):
        app.backend.instance_stopped(inst, deallocated=action == "deallocate")
        _set_state(app, rec, "Succeeded", "deallocated" if action == "deallocate" else "stopped")
    elif action == "evict":  # a Spot eviction: the model's evictionPolicy (Deallocate by default, or Delete)
        if get_path(rec["x"]["model"] or {}, "evictionPolicy") == "Delete":
            _instance_action(app, rec, "delete")
            _sync_capacity(app, rec["x"].get("vmss_id"))
        else:
            _instance_action(app, rec, "deallocate")
    elif action == "delete":
        app.backend.instance_deleted(inst)
        _remove_instance(app, rec)


def _sync_capacity(app, vmss) -> None:
    """After instances were deleted by id, the scale set's capacity is the number it has left."""
    vrec = app.store.get(vmss) if vmss else None
    if vrec:
        with app.store.lock:
            vrec["body"]["sku"]["capacity"] = len(instances_of(app, vrec))
            vrec["x"]["spec"].setdefault("sku", {})["capacity"] = vrec["body"]["sku"]["capacity"]
            app.store.touch()


@job("platform_event")
def platform_event_job(app, op, event, action):
    app.events.run(op["name"], [event], lambda recs: _parallel(app, lambda r: _instance_action(app, r, action), recs))


@job("instance_action")
def instance_action_job(app, op, ids, action, vmss=None, events=None):
    time.sleep(min(app.config.provisioning_seconds, 0.5))
    if action == "manualupgrade":
        vrec = app.store.get(vmss)
        _upgrade(app, vrec, ids, rolling=False)
        return None
    if action in ("osrollingupgrade", "extensionrollingupgrade"):
        vrec = app.store.get(vmss)
        _upgrade(app, vrec, ids, rolling=True, reimage=action == "osrollingupgrade")
        return None
    events = events or {}
    recs = [r for r in (app.store.get(i) for i in ids) if r is not None]

    def act(recs):
        _parallel(app, lambda r: _instance_action(app, r, action), recs)
    act([r for r in recs if r["body"]["id"] not in events])  # no Scheduled Event: at once
    app.events.run(op["name"], list(events.values()), act)  # the others when their event starts
    if action == "delete":
        _sync_capacity(app, vmss)
    return None


@job("vmss_delete")
def vmss_delete_job(app, op, vmss):
    time.sleep(min(app.config.provisioning_seconds, 0.5))
    delete_vmss_now(app, vmss)


def delete_vmss_now(app, rid) -> None:
    vrec = app.store.get(rid)
    if vrec is None:
        return

    def one(rec):
        app.backend.instance_deleted(instance_dict(app, rec))
        _remove_instance(app, rec)
    _parallel(app, one, instances_of(app, vrec))
    app.store.delete(rid)


@registry.on_purge(10)  # instances first: they hold IPs and NICs in the networks purged after them
def purge_under(app, prefix: str) -> None:
    for rec in app.store.of_type(VMSS, prefix):
        delete_vmss_now(app, rec["body"]["id"])
    for rec in app.store.of_type(VM, prefix):
        app.backend.instance_deleted(instance_dict(app, rec))
        _remove_instance(app, rec)


# -- scale set routes ------------------------------------------------------------------------------
@route("GET", C)
def get_vmss(app, req, sub, rg, vmss):
    return Response(200, render_vmss(app, get_vmss_rec(app, rg, vmss)))


@route("DELETE", C)
def delete_vmss(app, req, sub, rg, vmss):
    rec = app.store.get(vmss_id(app, rg, vmss))
    if rec is None:
        return Response(204)
    _set_state(app, rec, "Deleting")
    op = app.lro.start(req, NS, rec["body"]["location"], "vmss_delete", {"vmss": rec["body"]["id"]},
                       rec["body"]["id"])
    return app.lro.accepted(op)


list_routes(VMSS, render_vmss)


@route("GET", C + r"/instanceView")
def vmss_instance_view(app, req, sub, rg, vmss):
    vrec = get_vmss_rec(app, rg, vmss)
    counts = {}
    for r in instances_of(app, vrec):
        code = f"ProvisioningState/{r['body']['properties']['provisioningState'].lower()}"
        counts[code] = counts.get(code, 0) + 1
        pcode = f"PowerState/{power_state(app, r)}"
        counts[pcode] = counts.get(pcode, 0) + 1
    state = vrec["body"]["properties"]["provisioningState"]
    return Response(200, {"virtualMachine": {"statusesSummary": [{"code": k, "count": v} for k, v in counts.items()]},
                          "extensions": [], "orchestrationServices": [],
                          "statuses": [{"code": f"ProvisioningState/{state.lower()}", "level": "Info",
                                        "displayStatus": f"Provisioning {state.lower()}",
                                        "time": vrec["body"]["properties"]["timeCreated"]}]})


@route("GET", C + r"/skus")
def vmss_skus(app, req, sub, rg, vmss):
    vrec = get_vmss_rec(app, rg, vmss)
    loc = vrec["body"]["location"]
    return Response(200, {"value": [
        {"resourceType": VMSS, "sku": {"name": n, "tier": "Standard"},
         "capacity": {"minimum": 0, "maximum": 1000, "defaultCapacity": 0, "scaleType": "Automatic"}}
        for n in quotas.offered(loc)]})


@route("GET", C + r"/rollingUpgrades/latest")
def rolling_latest(app, req, sub, rg, vmss):
    vrec = get_vmss_rec(app, rg, vmss)
    status = vrec["x"].get("rolling")
    if not status:
        raise entity_not_found()
    return Response(200, {"type": VMSS + "/rollingUpgrades", "location": vrec["body"]["location"],
                          "properties": deep(status)})


@route("POST", C + r"/rollingUpgrades/cancel")
def rolling_cancel(app, req, sub, rg, vmss):
    vrec = get_vmss_rec(app, rg, vmss)
    if not vrec["x"].get("rolling") or vrec["x"]["rolling"]["runningStatus"]["code"] != "RollingForward":
        raise ArmError(409, "OperationNotAllowed", "There is no ongoing Rolling Upgrade to cancel.")
    vrec["x"]["rolling_cancel"] = True
    op = app.lro.start(req, NS, vrec["body"]["location"], "instance_action", {"ids": [], "action": "noop"})
    return app.lro.accepted(op)


@route("POST", C + r"/(?P<action>restart|reimage|reimageall|start|poweroff|deallocate|redeploy|delete|manualupgrade|"
                   r"osrollingupgrade|extensionrollingupgrade)")
def vmss_action(app, req, sub, rg, vmss, action):
    action = action.lower()
    vrec = get_vmss_rec(app, rg, vmss)
    requested = (req.body or {}).get("instanceIds")
    flexible = vrec["body"]["properties"].get("orchestrationMode") == "Flexible"
    members = {(r["body"].get("instanceId") or r["body"]["name"]).lower(): r for r in instances_of(app, vrec)}
    if action in ("delete", "manualupgrade") and not requested:
        raise invalid_parameter("Required parameter 'instanceIds' is missing (null).", "instanceIds")
    if requested is None:
        chosen = list(members.values())
    else:
        chosen = []
        for iid in requested:
            if iid == "*":
                chosen = list(members.values())
                break
            if str(iid).lower() not in members:
                raise invalid_parameter(f"The provided instanceId {iid} is not an active Virtual Machine Scale Set "
                                        "VM instanceId.", "instanceIds")
            chosen.append(members[str(iid).lower()])
    if action not in ("delete",):
        chosen = [r for r in chosen if not _protected_from_scale_set_actions(r)]
    if action in ("osrollingupgrade", "extensionrollingupgrade") and flexible:
        _uniform_only(vrec)
    ids = [r["body"]["id"] for r in chosen]
    if action == "delete":
        for r in chosen:
            _set_state(app, r, "Deleting")
    if action in ("osrollingupgrade", "extensionrollingupgrade"):
        with app.store.lock:
            start_rolling_status(vrec, len(chosen))
            app.store.touch()
    events = _schedule_terminate(app, chosen) if action == "delete" else _schedule_user_action(app, chosen, action)
    op = app.lro.start(req, NS, vrec["body"]["location"], "instance_action",
                       {"ids": ids, "action": action, "vmss": vrec["body"]["id"], "events": events}, vrec["body"]["id"])
    return app.lro.accepted(op)


# -- scale set VM routes ---------------------------------------------------------------------------
@route("GET", C + r"/virtualMachines")
def list_vmss_vms(app, req, sub, rg, vmss):
    vrec = get_vmss_rec(app, rg, vmss)
    _uniform_only(vrec)
    expand = (req.q("$expand") or "").lower()
    recs = instances_of(app, vrec)
    m = re.search(r"properties/latestModelApplied\s+eq\s+(true|false)", req.q("$filter") or "", re.I)
    if m:  # the one $filter the scale-set VM list supports besides instance view expressions
        want = m.group(1).lower() == "true"
        recs = [r for r in recs if (r["x"]["model_version"] == vrec["x"]["model_version"]) == want]
    return Response(200, paged(req, recs, app.config.page_size,
                               lambda r: render_vm(app, r, instance_view="instanceview" in expand)))


@route("GET", CV)
def get_vmss_vm(app, req, sub, rg, vmss, iid):
    rec = get_vm_rec(app, rg, vmss, iid)
    expand = (req.q("$expand") or "").lower()
    return Response(200, render_vm(app, rec, "instanceview" in expand, "userdata" in expand))


@route("GET", CV + r"/instanceView")
def get_vmss_vm_view(app, req, sub, rg, vmss, iid):
    return Response(200, instance_view_body(app, get_vm_rec(app, rg, vmss, iid)))


@route("PUT", CV)
def put_vmss_vm(app, req, sub, rg, vmss, iid):
    rec = get_vm_rec(app, rg, vmss, iid)
    body = req.body or {}
    with app.store.lock:
        if "tags" in body:
            rec["body"]["tags"] = body["tags"] or {}
        policy = get_path(body, "properties.protectionPolicy")
        if policy is not None:
            scale_in = bool(policy.get("protectFromScaleIn", False))
            scale_set_actions = bool(policy.get("protectFromScaleSetActions", False))
            if scale_set_actions and not scale_in:  # instance protection docs: "You can't specify ..."
                raise invalid_parameter("'protectFromScaleIn' cannot be false when 'protectFromScaleSetActions' is "
                                        "true: protection from scale-set actions includes protection from scale-in.",
                                        "protectionPolicy.protectFromScaleIn")
            rec["body"]["properties"]["protectionPolicy"] = {"protectFromScaleIn": scale_in,
                                                             "protectFromScaleSetActions": scale_set_actions}
        rec["body"]["etag"] = f'"{int(rec["body"]["etag"].strip(chr(34))) + 1}"'
        app.store.touch()
    op = app.lro.start(req, NS, rec["body"]["location"], "instance_action",
                       {"ids": [], "action": "noop"}, rec["body"]["id"])
    view = render_vm(app, rec)
    view["properties"]["provisioningState"] = "Updating"
    return Response(200, view, app.lro.headers(op, location=False))


@route("POST", CV + r"/(?P<action>restart|reimage|reimageall|start|poweroff|deallocate|redeploy)")
def vmss_vm_action(app, req, sub, rg, vmss, iid, action):
    rec = get_vm_rec(app, rg, vmss, iid)
    events = _schedule_user_action(app, [rec], action.lower())
    op = app.lro.start(req, NS, rec["body"]["location"], "instance_action",
                       {"ids": [rec["body"]["id"]], "action": action.lower(), "events": events}, rec["body"]["id"])
    return app.lro.accepted(op)


@route("DELETE", CV)
def delete_vmss_vm(app, req, sub, rg, vmss, iid):
    vrec = get_vmss_rec(app, rg, vmss)
    _uniform_only(vrec)
    rec = app.store.get(vrec["body"]["id"] + "/virtualMachines/" + iid)
    if rec is None:  # the real service answers an (empty) 202 operation here, as recorded
        op = app.lro.start(req, NS, vrec["body"]["location"], "instance_action", {"ids": [], "action": "noop"})
        return app.lro.accepted(op)
    _set_state(app, rec, "Deleting")
    events = _schedule_terminate(app, [rec])
    op = app.lro.start(req, NS, rec["body"]["location"], "instance_action",
                       {"ids": [rec["body"]["id"]], "action": "delete", "vmss": vrec["body"]["id"], "events": events},
                       rec["body"]["id"])
    return app.lro.accepted(op)


# -- scale-set NIC and public IP views (Microsoft.Network operations on scale-set paths) -----------
@route("GET", C + r"/networkInterfaces")
def list_vmss_nics(app, req, sub, rg, vmss):
    vrec = get_vmss_rec(app, rg, vmss)
    return Response(200, paged(req, app.store.of_type(network.VMSS_NIC, vrec["body"]["id"]), app.config.page_size,
                               lambda r: deep(r["body"])))


@route("GET", CV + r"/networkInterfaces")
def list_vmss_vm_nics(app, req, sub, rg, vmss, iid):
    vm = get_vm_rec(app, rg, vmss, iid)
    return Response(200, {"value": [deep(r["body"]) for r in app.store.of_type(network.VMSS_NIC, vm["body"]["id"])]})


@route("GET", CV + r"/networkInterfaces/(?P<nic>[^/]+)")
def get_vmss_vm_nic(app, req, sub, rg, vmss, iid, nic):
    vm = get_vm_rec(app, rg, vmss, iid)
    rec = app.store.get(vm["body"]["id"] + "/networkInterfaces/" + nic)
    if rec is None:
        raise not_found(network.NIC, nic, rg)
    return Response(200, deep(rec["body"]))


@route("GET", CV + r"/networkInterfaces/(?P<nic>[^/]+)/ipConfigurations")
def list_vmss_vm_nic_ipconfigs(app, req, sub, rg, vmss, iid, nic):
    body = get_vmss_vm_nic(app, req, sub, rg, vmss, iid, nic).body
    return Response(200, {"value": body["properties"]["ipConfigurations"]})


@route("GET", C + r"/publicipaddresses")
def list_vmss_public_ips(app, req, sub, rg, vmss):
    """Truthfully empty: the emulator creates no public IPs (see network.py)."""
    get_vmss_rec(app, rg, vmss)
    return Response(200, {"value": []})


# -- virtual machines (Flexible scale set members) -------------------------------------------------
def _get_vm(app, rg, name) -> dict:
    rec = app.store.get(f"/subscriptions/{app.sub}/resourceGroups/{rg}/providers/{VM}/{name}")
    if rec is None:
        require_rg(app, rg)
        raise not_found(VM, name, rg)
    return rec


def _vm_filter(req, recs):
    flt = req.q("$filter") or ""
    if "virtualmachinescaleset/id" in flt.lower():
        wanted = flt.split("eq", 1)[1].strip().strip("'").lower()
        recs = [r for r in recs if r["x"].get("vmss_id", "").lower() == wanted]
    return recs


@route("GET", type_path(RG, VM))
def list_vms(app, req, sub, rg):
    require_rg(app, rg)
    recs = _vm_filter(req, app.store.of_type(VM, f"/subscriptions/{app.sub}/resourceGroups/{rg}"))
    expand = "instanceview" in (req.q("$expand") or "").lower()
    return Response(200, paged(req, recs, app.config.page_size, lambda r: render_vm(app, r, expand)))


@route("GET", type_path(SUB, VM))
def list_all_vms(app, req, sub):
    recs = _vm_filter(req, app.store.of_type(VM))
    expand = "instanceview" in (req.q("$expand") or "").lower()
    return Response(200, paged(req, recs, app.config.page_size, lambda r: render_vm(app, r, expand)))


@route("GET", VMR)
def get_vm(app, req, sub, rg, vm):
    expand = (req.q("$expand") or "").lower()
    return Response(200, render_vm(app, _get_vm(app, rg, vm), "instanceview" in expand, "userdata" in expand))


@route("GET", VMR + r"/instanceView")
def get_vm_view(app, req, sub, rg, vm):
    return Response(200, instance_view_body(app, _get_vm(app, rg, vm)))


@route("POST", VMR + r"/(?P<action>restart|reimage|start|poweroff|deallocate|redeploy)")
def vm_action(app, req, sub, rg, vm, action):
    rec = _get_vm(app, rg, vm)
    events = _schedule_user_action(app, [rec], action.lower())
    op = app.lro.start(req, NS, rec["body"]["location"], "instance_action",
                       {"ids": [rec["body"]["id"]], "action": action.lower(), "events": events}, rec["body"]["id"])
    return app.lro.accepted(op)


@route("DELETE", VMR)
def delete_vm(app, req, sub, rg, vm):
    rec = app.store.get(f"/subscriptions/{app.sub}/resourceGroups/{rg}/providers/{VM}/{vm}")
    if rec is None:
        return Response(204)
    _set_state(app, rec, "Deleting")
    events = _schedule_terminate(app, [rec])
    op = app.lro.start(req, NS, rec["body"]["location"], "instance_action",
                       {"ids": [rec["body"]["id"]], "action": "delete", "vmss": rec["x"].get("vmss_id"),
                        "events": events}, rec["body"]["id"])
    return app.lro.accepted(op)


# -- usages and SKUs -------------------------------------------------------------------------------
@route("GET", SUB + r"/providers/Microsoft\.Compute/locations/(?P<loc>[^/]+)/usages")
def usages(app, req, sub, loc):
    loc = normalize_location(loc, "Microsoft.Compute/locations/usages")
    return Response(200, quotas.usages_list(app, loc, usage(app, loc)))


@route("GET", SUB + r"/providers/Microsoft\.Compute/skus")
def resource_skus(app, req, sub):
    flt = req.q("$filter") or ""
    loc = None
    if "location" in flt.lower() and "eq" in flt:
        loc = normalize_location(flt.split("eq", 1)[1].strip().strip("'"), "Microsoft.Compute/skus")
    return Response(200, quotas.skus_list(loc))

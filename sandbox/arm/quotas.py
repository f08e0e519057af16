"""VM size catalogue (resource SKUs), per-location vCPU quotas, usages and the quota check."""
from __future__ import annotations

from .errors import ArmError
from .util import LOCATIONS

# name -> (family, vCPUs, memory GB)
SIZES: dict[str, tuple[str, int, float]] = {}


def _series(fmt: str, family: str, cpus, mem_per_cpu: float):
    for n in cpus:
        SIZES[fmt.format(n=n)] = (family, n, n * mem_per_cpu)


for _name, _c, _m in [("Standard_A0", 1, 0.75), ("Standard_A1", 1, 1.75), ("Standard_A2", 2, 3.5),
                      ("Standard_A3", 4, 7.0)]:
    SIZES[_name] = ("standardA0_A7Family", _c, _m)
for _name, _c, _m in [("Standard_B1s", 1, 1), ("Standard_B1ms", 1, 2), ("Standard_B2s", 2, 4), ("Standard_B2ms", 2, 8),
                      ("Standard_B4ms", 4, 16), ("Standard_B8ms", 8, 32), ("Standard_B12ms", 12, 48),
                      ("Standard_B16ms", 16, 64)]:
    SIZES[_name] = ("standardBSFamily", _c, _m)
for _i, _c in enumerate([1, 2, 4, 8, 16], start=1):
    SIZES[f"Standard_D{_i}_v2"] = ("standardDv2Family", _c, 3.5 * _c)
    SIZES[f"Standard_DS{_i}_v2"] = ("standardDSv2Family", _c, 3.5 * _c)
_D = [2, 4, 8, 16, 32, 48, 64]
_series("Standard_D{n}_v3", "standardDv3Family", _D, 4)
_series("Standard_D{n}s_v3", "standardDSv3Family", _D, 4)
_series("Standard_D{n}_v4", "standardDv4Family", _D, 4)
_series("Standard_D{n}s_v4", "standardDSv4Family", _D, 4)
_series("Standard_D{n}_v5", "standardDv5Family", _D + [96], 4)
_series("Standard_D{n}s_v5", "standardDSv5Family", _D + [96], 4)
_series("Standard_D{n}as_v5", "standardDASv5Family", _D + [96], 4)
_series("Standard_D{n}ds_v5", "standardDDSv5Family", _D + [96], 4)
_series("Standard_E{n}_v3", "standardEv3Family", _D, 8)
_series("Standard_E{n}s_v3", "standardESv3Family", _D, 8)
_series("Standard_E{n}_v5", "standardEv5Family", _D + [96], 8)
_series("Standard_E{n}s_v5", "standardESv5Family", _D + [96], 8)
_series("Standard_F{n}", "standardFFamily", [1, 2, 4, 8, 16], 2)
_series("Standard_F{n}s", "standardFSFamily", [1, 2, 4, 8, 16], 2)
_series("Standard_F{n}s_v2", "standardFSv2Family", [2, 4, 8, 16, 32, 48, 64, 72], 2)

# Sandbox data so SkuNotAvailable can be exercised: sizes not offered to this subscription in a region.
RESTRICTED = {"brazilsouth": {"Standard_E64_v3", "Standard_E64s_v3", "Standard_E96_v5", "Standard_E96s_v5"}}
FAMILIES = sorted({f for f, _, _ in SIZES.values()})
DEFAULTS = {"cores": 100, "virtualMachines": 25000, "virtualMachineScaleSets": 2500, "availabilitySets": 2500,
            **{f: 100 for f in FAMILIES}}
NAMES = {"cores": "Total Regional vCPUs", "virtualMachines": "Virtual Machines",
         "virtualMachineScaleSets": "Virtual Machine Scale Sets", "availabilitySets": "Availability Sets"}


def size_info(name: str) -> tuple[str, int, float] | None:
    for key, value in SIZES.items():
        if key.lower() == (name or "").lower():
            return value
    return None


def canonical_size(name: str) -> str:
    return next((k for k in SIZES if k.lower() == name.lower()), name)


def check_size(size: str, location: str) -> tuple[str, int, float]:
    info = size_info(size)
    if info is None:
        raise ArmError(400, "InvalidParameter",
                       f"The value {size} provided for the VM size is not valid. The valid sizes in the current "
                       f"region are: {', '.join(offered(location))}.",
                       target="vmSize")
    if canonical_size(size) in RESTRICTED.get(location, ()):
        raise ArmError(409, "SkuNotAvailable",
                       f"The requested VM size for resource 'Following SKUs have failed for Capacity Restrictions: "
                       f"{canonical_size(size)}' is currently not available in location '{location}'. Please try "
                       "another size or deploy to a different location or different zone. See "
                       "https://aka.ms/azureskunotavailable for details.")
    return info


def localized(name: str) -> str:
    if name in NAMES:
        return NAMES[name]
    return "Standard " + name[len("standard"):-len("Family")].replace("_", "-") + " Family vCPUs"


def limits(app, location: str) -> dict:
    overrides = app.store.data["quotas"].get(location, {})
    merged = dict(DEFAULTS)
    merged.update(overrides)
    return merged


def effective_limits(app) -> dict:
    return {loc: ov for loc, ov in app.store.data["quotas"].items()}


def set_limits(app, spec: dict) -> None:
    with app.store.lock:
        for loc, values in spec.items():
            loc = loc.replace(" ", "").lower()
            current = app.store.data["quotas"].setdefault(loc, {})
            for name, limit in (values or {}).items():
                key = next((f for f in list(DEFAULTS) if f.lower() == name.lower()), name)
                current[key] = int(limit)
        app.store.touch()


def usage(sizes: list[str], scale_sets: int) -> dict:
    """Usage per quota name from the sizes of the instances holding cores in a location (not
    deallocated) and the number of scale sets there (the compute provider supplies both)."""
    used = {k: 0 for k in DEFAULTS}
    for size in sizes:
        family, cpus, _ = size_info(size) or ("", 0, 0)
        used["cores"] += cpus
        used[family] = used.get(family, 0) + cpus
        used["virtualMachines"] += 1
    used["virtualMachineScaleSets"] = scale_sets
    return used


def usages_list(app, location: str, used: dict) -> dict:
    lim = limits(app, location)
    order = ["availabilitySets", "cores", "virtualMachines", "virtualMachineScaleSets"] + FAMILIES
    return {"value": [{"limit": lim[n], "unit": "Count", "currentValue": used.get(n, 0),
                       "name": {"value": n, "localizedValue": localized(n)}} for n in order]}


def check(app, location: str, used: dict, additional: dict, regional: int | None = None) -> None:
    """Raise the real 409 OperationNotAllowed if adding {family: vCPUs} to ``used`` exceeds a family or
    regional quota."""
    lim = limits(app, location)
    total = sum(additional.values()) if regional is None else regional
    checks = [(f, n, f"{f} Cores") for f, n in additional.items() if n > 0]
    if total > 0:
        checks.append(("cores", total, "Total Regional Cores"))
    for name, extra, label in checks:
        if used.get(name, 0) + extra > lim.get(name, 0):
            doc = "regional-quota-requests" if name == "cores" else "per-vm-quota-requests"
            raise ArmError(409, "OperationNotAllowed",
                           f"Operation could not be completed as it results in exceeding approved {label} quota. "
                           f"Additional details - Deployment Model: Resource Manager, Location: {location}, "
                           f"Current Limit: {lim.get(name, 0)}, Current Usage: {used.get(name, 0)}, "
                           f"Additional Required: {extra}, (Minimum) New Limit Required: {used.get(name, 0) + extra}. "
                           "Submit a request for Quota increase at https://aka.ms/ProdportalCRP/#blade/"
                           "Microsoft_Azure_Capacity/UsageAndQuota.ReactView/Parameters/%7B%22SubscriptionId%22:%22"
                           f"{app.sub}%22,%22Command%22:%22openQuotaApprovalBlade%22%7D by specifying parameters "
                           "listed in the ‘Details’ section for deployment to succeed. Please read more about quota "
                           f"limits at https://docs.microsoft.com/en-us/azure/azure-supportability/{doc}")


OS_DISK_MB = 1047552


def _resource_disk_mb(cpus: int) -> int:
    return cpus * 8192


def _max_data_disks(cpus: int) -> int:
    return min(64, cpus * 4)


def offered(location: str) -> list[str]:
    """The sizes offered to the subscription in a location (the restricted ones left out)."""
    return [n for n in SIZES if n not in RESTRICTED.get(location, ())]


def vm_size_body(name: str) -> dict:
    """A VirtualMachineSize (locations/{loc}/vmSizes): the same numbers as the size's resource SKU."""
    _, cpus, mem = SIZES[name]
    return {"name": name, "numberOfCores": cpus, "osDiskSizeInMB": OS_DISK_MB,
            "resourceDiskSizeInMB": _resource_disk_mb(cpus), "memoryInMB": int(mem * 1024),
            "maxDataDiskCount": _max_data_disks(cpus)}


def sku_body(name: str, location: str) -> dict:
    family, cpus, mem = SIZES[name]
    caps = {"MaxResourceVolumeMB": str(_resource_disk_mb(cpus)), "OSVhdSizeMB": str(OS_DISK_MB), "vCPUs": str(cpus),
            "HyperVGenerations": "V1,V2", "MemoryGB": f"{mem:g}", "MaxDataDiskCount": str(_max_data_disks(cpus)),
            "LowPriorityCapable": "True", "PremiumIO": "True" if "s" in name.split("_")[1][1:] else "False",
            "vCPUsAvailable": str(cpus), "ACUs": "160", "vCPUsPerCore": "2" if cpus > 1 else "1",
            "EphemeralOSDiskSupported": "True", "AcceleratedNetworkingEnabled": "True" if cpus >= 2 else "False",
            "RdmaEnabled": "False", "MaxNetworkInterfaces": str(max(2, min(8, cpus)))}
    restricted = name in RESTRICTED.get(location, ())
    return {"resourceType": "virtualMachines", "locations": [location],
            "capabilities": [{"name": k, "value": v} for k, v in caps.items()],
            "locationInfo": [{"location": location, "zones": ["1", "2", "3"],
                              "zoneDetails": [{"name": ["1", "2", "3"],
                                               "capabilities": [{"name": "UltraSSDAvailable", "value": "True"}]}]}],
            "name": name, "tier": "Standard", "size": name.split("_", 1)[1], "family": family,
            "restrictions": [{"type": "Location", "values": [location],
                              "restrictionInfo": {"locations": [location]},
                              "reasonCode": "NotAvailableForSubscription"}] if restricted else []}


def skus_list(location_filter: str | None) -> dict:
    locations = [location_filter] if location_filter else list(LOCATIONS)
    return {"value": [sku_body(n, loc) for loc in locations for n in SIZES]}

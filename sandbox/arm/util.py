"""Small helpers shared by all resource providers."""
from __future__ import annotations

import copy
import datetime as _dt
import re
import uuid

from .errors import ArmError

LOCATIONS = {  # Azure public cloud regions
    "eastus": "East US", "eastus2": "East US 2", "southcentralus": "South Central US", "westus2": "West US 2",
    "westus3": "West US 3", "australiaeast": "Australia East", "southeastasia": "Southeast Asia",
    "northeurope": "North Europe", "swedencentral": "Sweden Central", "uksouth": "UK South",
    "westeurope": "West Europe", "centralus": "Central US", "southafricanorth": "South Africa North",
    "centralindia": "Central India", "eastasia": "East Asia", "indonesiacentral": "Indonesia Central",
    "japaneast": "Japan East", "japanwest": "Japan West", "koreacentral": "Korea Central",
    "koreasouth": "Korea South", "malaysiawest": "Malaysia West", "newzealandnorth": "New Zealand North",
    "canadacentral": "Canada Central", "canadaeast": "Canada East", "francecentral": "France Central",
    "francesouth": "France South", "germanywestcentral": "Germany West Central", "germanynorth": "Germany North",
    "italynorth": "Italy North", "norwayeast": "Norway East", "norwaywest": "Norway West",
    "polandcentral": "Poland Central", "spaincentral": "Spain Central", "switzerlandnorth": "Switzerland North",
    "switzerlandwest": "Switzerland West", "mexicocentral": "Mexico Central", "uaenorth": "UAE North",
    "uaecentral": "UAE Central", "brazilsouth": "Brazil South", "brazilsoutheast": "Brazil Southeast",
    "israelcentral": "Israel Central", "qatarcentral": "Qatar Central", "northcentralus": "North Central US",
    "westus": "West US", "westcentralus": "West Central US", "southafricawest": "South Africa West",
    "australiacentral": "Australia Central", "australiacentral2": "Australia Central 2",
    "australiasoutheast": "Australia Southeast", "southindia": "South India", "westindia": "West India",
    "jioindiawest": "Jio India West", "jioindiacentral": "Jio India Central", "ukwest": "UK West",
    "swedensouth": "Sweden South",
}


def now_iso() -> str:
    """Timestamps as ARM writes them: 2021-01-19T09:34:39.1304066+00:00."""
    t = _dt.datetime.now(_dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond:06d}0+00:00"


def new_guid() -> str:
    return str(uuid.uuid4())


def etag() -> str:
    return f'W/"{uuid.uuid4()}"'


def deep(obj):
    return copy.deepcopy(obj)


def merge_patch(target, patch):
    """JSON merge patch (RFC 7396) as ARM PATCH applies it: dicts merge, null deletes, others replace."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def get_path(obj, dotted: str, default=None):
    cur = obj
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return default
        cur = cur[part]
    return cur


def normalize_location(location, resource_type: str) -> str:
    if not isinstance(location, str) or not location:
        raise ArmError(400, "LocationRequired",
                       "The location property is required for this definition.")
    loc = location.replace(" ", "").lower()
    if loc not in LOCATIONS:
        raise ArmError(400, "LocationNotAvailableForResourceType",
                       f"The provided location '{location}' is not available for resource type '{resource_type}'. "
                       f"List of available regions for the resource type is '{','.join(LOCATIONS)}'.")
    return loc


_NAME_RE = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,78}[A-Za-z0-9_])?$")


def check_name(name: str, max_len: int = 80) -> None:
    """ARM's name rule for network/compute resources (word char first, word char or '_' last)."""
    if len(name) > max_len or not _NAME_RE.match(name):
        raise ArmError(400, "InvalidResourceName",
                       f"Resource name {name} is invalid. The name can be up to {max_len} characters long. "
                       "It must begin with a word character, and it must end with a word character or with '_'. "
                       "The name may contain word characters or '.', '-', '_'.")


_RG_RE = re.compile(r"^[-\w._()]{1,90}$")


def check_rg_name(name: str) -> None:
    if not _RG_RE.match(name) or name.endswith("."):
        raise ArmError(400, "InvalidResourceGroupName",  # ARM: resource group names allow -, _, ., (, ), alnum
                       f"The resource group name '{name}' is invalid. Resource group names can only include "
                       "alphanumeric, underscore, parentheses, hyphen, period (except at end), and Unicode "
                       "characters that match the allowed characters. Resource group name must be 1-90 characters.")


def rid_rg(rid: str) -> str | None:
    m = re.match(r"^/subscriptions/[^/]+/resourcegroups/([^/]+)", rid, re.I)
    return m.group(1) if m else None


def strip_secrets(obj):
    """Remove write-only values ARM never returns (adminPassword, customData, protectedSettings)."""
    if isinstance(obj, dict):
        return {k: strip_secrets(v) for k, v in obj.items()
                if k not in ("adminPassword", "customData", "protectedSettings")}
    if isinstance(obj, list):
        return [strip_secrets(v) for v in obj]
    return obj

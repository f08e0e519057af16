"""Response shapes: the documented API samples (data/*-api-samples.json) as templates.

`conforms(sample, actual)` is the structural comparator used by the tests: every key of a
struct-like sample object must be present with a value of the same JSON type; lists are
checked item by item against the sample's first item; free-form maps (Tags, Meta,
Attributes, ...) are checked value by value against the sample's first value.
`fill(obj, sample)` adds the struct fields a Go API would always serialise, as zero values.
"""

from __future__ import annotations

import copy
import json
import re
from functools import cache

FREEFORM = {
    "Tags", "Meta", "Attributes", "Drivers", "Scores", "NodesAvailable", "TaskStates", "TaskResources",
    "Keys", "PrimaryKeys", "HostVolumes", "HostNetworks", "Links", "Summary", "Options", "ChrootEnv",
    "Config", "Env", "Details", "HTTPAPIResponseHeaders", "RedundancyZones", "ClassFiltered",
    "ClassExhausted", "ConstraintFiltered", "DimensionExhausted", "QuotaExhausted", "stats",
    "TaggedAddresses", "Stats", "DebugConfig", "ServiceTags", "QueuedAllocations", "FailedTGAllocs",
    "DesiredTGUpdates", "ServiceMeta", "NodeMeta", "ServiceTaggedAddresses", "Services", "Definition", "Header",
}


def _data(name: str) -> str:
    try:
        import importlib.resources as res
        return (res.files(__package__) / "data" / name).read_text()
    except (FileNotFoundError, ModuleNotFoundError):  # pragma: no cover
        from pathlib import Path
        return (Path(__file__).parent / "data" / name).read_text()


@cache
def samples(product: str) -> dict:
    """The reference samples (copied from shared/reference) plus the ones this repo extracted from the API docs
    (<product>-api-samples-more.json; the source of each in its _source/_meta)."""
    out = json.loads(_data(f"{product}-api-samples.json"))
    more = json.loads(_data(f"{product}-api-samples-more.json"))
    out["_meta"] = dict(out.get("_meta") or {}, **more.pop("_meta"))
    more.pop("_source", None)
    out.update(more)
    return out


def sample(product: str, key: str):
    return copy.deepcopy(samples(product)[key])


_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _data_keyed(s: dict) -> bool:
    """A map keyed by ids (e.g. autopilot state's Servers) rather than a struct."""
    return bool(s) and all(_UUID.match(k) for k in s)


_STATS_SECTIONS = {"runtime", "nomad", "raft", "client", "serf", "vault"}


def _freeform(path: str, key: str, s=None) -> bool:
    if key == "TaskGroups":  # a list of groups in a job, a map by group name in a deployment
        return isinstance(s, dict)
    if key == "Config":
        return "Tasks" in path
    if key in _STATS_SECTIONS:
        return path.endswith(f".stats.{key}")
    return key in FREEFORM


def _zero(s):
    if isinstance(s, bool):
        return False
    if isinstance(s, int):
        return 0
    if isinstance(s, float):
        return 0.0
    if isinstance(s, str):
        return ""
    if isinstance(s, list):
        return []
    if isinstance(s, dict):
        return {}
    return None


def fill(obj, s, key: str = "", path: str = ""):
    """Fill missing struct fields of obj from sample s with zero values (recursively)."""
    if isinstance(obj, dict) and isinstance(s, dict):
        if _freeform(path, key, s) or _data_keyed(s):
            first = next(iter(s.values()), None) if s else None
            if isinstance(first, dict):
                for k in obj:
                    fill(obj[k], first, k, f"{path}.{k}")
            return obj
        for k, sv in s.items():
            sub = f"{path}.{k}"
            if k not in obj:
                obj[k] = fill({}, sv, k, sub) if isinstance(sv, dict) and not _freeform(sub, k, sv) else _zero(sv)
            else:
                fill(obj[k], sv, k, sub)
        return obj
    if isinstance(obj, list) and isinstance(s, list) and s:
        for it in obj:
            fill(it, s[0], "", path + "[]")
    return obj


def _type(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "list"
    return "object"


def conforms(s, a, path: str = "$", key: str = "", errors: list | None = None) -> list[str]:
    """Return a list of structural differences between sample s and actual a (empty = conforms)."""
    errors = [] if errors is None else errors
    if s is None:
        return errors
    if a is None and path != "$" and isinstance(s, (dict, list)):
        return errors  # Go nil pointer / nil slice
    if _type(s) != _type(a):
        errors.append(f"{path}: expected {_type(s)}, got {_type(a)}")
        return errors
    if isinstance(s, dict):
        if _freeform(path, key, s) or _data_keyed(s):
            if key == "Config":
                return errors  # a task driver's config: any keys and values (it belongs to the driver)
            kinds = {_type(v) for v in s.values()}
            first = next(iter(s.values()), None) if s else None
            for k, v in a.items():
                ref = s[k] if k in s else (first if len(kinds) == 1 else None)
                conforms(ref, v, f"{path}.{k}", k, errors)
            return errors
        for k, sv in s.items():
            if k not in a:
                errors.append(f"{path}: missing key {k!r}")
            else:
                conforms(sv, a[k], f"{path}.{k}", k, errors)
    elif isinstance(s, list) and s:
        for i, it in enumerate(a):
            conforms(s[0], it, f"{path}[{i}]", "", errors)
    return errors

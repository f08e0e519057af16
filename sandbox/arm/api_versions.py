"""api-version enforcement, as ARM does it before a request reaches a resource provider.

Each provider module registers its resource types with the api-versions azure-rest-api-specs
defines for them (``registry.Provider.resource_type``; ``python -m sandbox.arm api-versions``
prints the whole table with its sources). A request is resolved to (namespace, resource type)
the way ARM routes it — the last ``/providers/{namespace}`` of the path, then the longest
registered type made of the type segments after it — and refused with ARM's error bodies:

* ARM's own endpoints (subscriptions, tenants, resource groups, providers, ``/batch``):
  400 ``InvalidApiVersionParameter`` "The api-version '…' is invalid. The supported versions
  are '…'." (message format as ARM answers it, e.g. Azure/azure-sdk-for-net#2276,
  ansible-collections/azure#1739: comma-separated, newest first);
* a provider's type lacking that version: 400 ``NoRegisteredProviderFound`` "No registered
  resource provider found for location '…' and API version '…' for type '…'. The supported
  api-versions are '…'. The supported locations are '…'." (format from Azure/azure-cli#28496,
  #26885: ", "-separated, oldest first).
"""
from __future__ import annotations

from . import registry
from .errors import ArmError
from .util import LOCATIONS

ARM_NAMESPACE = "Microsoft.Resources"


def resolve(path: str) -> tuple[str, str]:
    """(namespace, resource type) ARM routes ``path`` to (ARM's own endpoints: Microsoft.Resources)."""
    parts = [p for p in path.split("/") if p]
    low = [p.lower() for p in parts]
    for i in range(len(low) - 2, -1, -1):
        if low[i] != "providers" or i + 1 >= len(parts):
            continue
        namespace, rest = parts[i + 1], parts[i + 2:]
        prov = registry.get_provider(namespace)
        if prov is None or not rest:
            break  # .../providers/{ns} (registration) and unknown namespaces: ARM itself answers
        types = rest[0::2]
        for n in range(len(types), 0, -1):
            candidate = "/".join(types[:n])
            if prov.versions(candidate) is not None:
                return prov.namespace, prov.types[candidate.lower()][0]
        if len(rest) == 1 and low[i + 2] in ("register", "unregister"):
            break
        return prov.namespace, "/".join(types)
    return ARM_NAMESPACE, _arm_type(low)


def _arm_type(low: list[str]) -> str:
    if not low:
        return ""
    if low[0] in ("tenants", "batch"):
        return low[0]
    if low[0] != "subscriptions":
        return low[0]
    if len(low) <= 2:
        return "subscriptions"
    kind = low[2]
    if kind == "resourcegroups":
        return "resourceGroups/resources" if len(low) > 4 else "resourceGroups"
    return {"locations": "locations", "providers": "providers", "resources": "resources",
            "operationresults": "operationresults"}.get(kind, kind)


def check(req, location_of) -> None:
    """Raise ARM's 400 when ``req.api_version`` is not one the resolved type supports.
    ``location_of()`` gives the location ARM names in NoRegisteredProviderFound."""
    version = req.api_version
    namespace, rtype = resolve(req.path)
    prov = registry.get_provider(namespace)
    supported = prov.versions(rtype) if prov else None
    if supported is None:
        # a route exists (the router matched it) but the table has no entry: an emulator bug,
        # refused loudly rather than answered under any version
        raise ArmError(500, "InternalServerError",
                       f"sandbox.arm serves '{namespace}/{rtype}' but its api-version table has no entry for it.")
    if version in supported:
        return
    if namespace == ARM_NAMESPACE:
        raise ArmError(400, "InvalidApiVersionParameter",
                       f"The api-version '{version}' is invalid. The supported versions are "
                       f"'{','.join(sorted(supported, reverse=True))}'.")
    raise ArmError(400, "NoRegisteredProviderFound",
                   f"No registered resource provider found for location '{location_of()}' and API version "
                   f"'{version}' for type '{rtype}'. The supported api-versions are '{', '.join(supported)}'. "
                   f"The supported locations are '{', '.join(LOCATIONS)}'.")


def supported(path: str) -> tuple[str, str, tuple | None]:
    """(namespace, type, versions or None) of a path — for the request-log check in the tests."""
    namespace, rtype = resolve(path)
    prov = registry.get_provider(namespace)
    return namespace, rtype, prov.versions(rtype) if prov else None

"""The resource providers of the emulator and what they offer each other.

Every module in ``resources/`` is one provider: it registers its routes with the router, its
resource types with their api-versions here (the table ARM enforces, see ``api_versions``), and
the hooks the other providers need without importing it:

* ``on_purge(order)`` — delete everything the provider keeps under an id prefix (a resource
  group being deleted); lower orders run first (instances before the networks they sit in).
* ``principal_source`` — the managed identities the provider's resources carry, so role
  assignments can name them and the admin API can issue their tokens.

Adding a provider (Key Vault, say) is one new module in ``resources/``: ``resources.load()`` imports
them all.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}(-[A-Za-z]+)?$")


@dataclass
class Provider:
    namespace: str
    source: str  # where the api-versions come from (azure-rest-api-specs paths and commits)
    types: dict = field(default_factory=dict)  # lower-cased type -> (type, versions)

    def resource_type(self, name: str, versions, source: str | None = None) -> Provider:
        """Register ``name`` (``"virtualMachineScaleSets/virtualMachines"``) with its api-versions."""
        bad = [v for v in versions if not ISO_DATE.match(v)]
        if bad:
            raise ValueError(f"{self.namespace}/{name}: not api-versions: {bad}")
        self.types[name.lower()] = (name, tuple(sorted(set(versions))), source or self.source)
        return self

    def versions(self, rtype: str) -> tuple | None:
        entry = self.types.get(rtype.lower())
        return entry[1] if entry else None


PROVIDERS: dict[str, Provider] = {}


def provider(namespace: str, source: str) -> Provider:
    key = namespace.lower()
    if key not in PROVIDERS:
        PROVIDERS[key] = Provider(namespace, source)
    return PROVIDERS[key]


def get_provider(namespace: str) -> Provider | None:
    return PROVIDERS.get(namespace.lower())


def table() -> list[tuple[str, str, tuple, str]]:
    """(namespace, type, versions, source) for every registered type, ordered."""
    return sorted((p.namespace, name, versions, source)
                  for p in PROVIDERS.values() for name, versions, source in p.types.values())


# -- cross-provider hooks -------------------------------------------------------------------------
_PURGES: list[tuple[int, object]] = []
_PRINCIPALS: list = []


def on_purge(order: int):
    def deco(fn):
        _PURGES.append((order, fn))
        _PURGES.sort(key=lambda p: p[0])
        return fn
    return deco


def purge_under(app, prefix: str) -> None:
    for _, fn in _PURGES:
        fn(app, prefix)


def principal_source(fn):
    """``fn(app)`` yields ``{"principalId", "clientId", "resourceId"}`` for each managed identity."""
    _PRINCIPALS.append(fn)
    return fn


def principals(app) -> dict:
    """principal id -> {"principalId", "clientId", "resourceId"} of every managed identity."""
    found = {}
    for fn in _PRINCIPALS:
        for ident in fn(app):
            found.setdefault(ident["principalId"], ident)
    return found


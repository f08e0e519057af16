"""The one router: resource modules register ``@route(METHOD, regex)`` handlers.

Patterns are matched case-insensitively against the whole normalised path (duplicate slashes
collapsed, no trailing slash), so ``microsoft.Compute`` and ``Microsoft.Compute`` are the same.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlencode

SEG = r"[^/]+"
SUB = r"/subscriptions/(?P<sub>[^/]+)"
RG = SUB + r"/resourceGroups/(?P<rg>[^/]+)"


def type_path(scope: str, rtype: str, name: str | None = None) -> str:
    """Pattern of a resource type (``"Microsoft.Network/virtualNetworks"``) under a scope pattern (SUB or
    RG); with name, of one resource of that type, its name captured as group ``name``."""
    path = scope + "/providers/" + re.escape(rtype)
    return path + rf"/(?P<{name}>{SEG})" if name else path

_ROUTES: list[tuple[str, re.Pattern, object, bool]] = []


def route(method: str, pattern: str, *, auth: bool | str = True):
    """``auth``: True (bearer token + RBAC on the path's scope), "tenant" (token only: tenant-level
    endpoints that filter what they show by the caller's role assignments), False (no auth)."""
    compiled = re.compile(pattern, re.IGNORECASE)

    def deco(fn):
        _ROUTES.append((method.upper(), compiled, fn, auth))
        return fn
    return deco


def match(method: str, path: str):
    """Return (handler, groups, needs_auth) or raise LookupError; MethodNotAllowed as ValueError."""
    path_matched = False
    for m, pattern, fn, auth in _ROUTES:
        found = pattern.fullmatch(path)
        if not found:
            continue
        path_matched = True
        if m == method or (method == "HEAD" and m == "GET" and not _has_head(path)):
            return fn, found.groupdict(), auth
    if path_matched:
        raise ValueError(method)
    raise LookupError(path)


def _has_head(path: str) -> bool:
    return any(m == "HEAD" and p.fullmatch(path) for m, p, _, _ in _ROUTES)


@dataclass
class Request:
    method: str
    path: str
    query: dict
    headers: dict
    body: object = None
    raw_body: bytes = b""
    principal: dict | None = None
    base: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def api_version(self) -> str | None:
        return self.query.get("api-version")

    def q(self, name: str, default=None):
        return self.query.get(name.lower(), default)

    def url(self, path: str | None = None, **params) -> str:
        query = {k: v for k, v in self.query.items()}
        query.update({k: v for k, v in params.items()})
        query = {k: v for k, v in query.items() if v is not None}
        return self.base + (path or self.path) + ("?" + urlencode(query, safe="'$()/ ,") if query else "")


@dataclass
class Response:
    status: int = 200
    body: object = None
    headers: dict = field(default_factory=dict)


def paged(req: Request, items: list, page_size: int, render=None) -> dict:
    """One page of a list plus nextLink (with $skiptoken) as ARM pages long lists; ``render`` is
    applied to the items of the page only."""
    try:
        start = int(req.q("$skiptoken") or 0)
    except ValueError:
        start = 0
    chunk = items[start:start + page_size]
    body = {"value": [render(i) for i in chunk] if render else chunk}
    if start + page_size < len(items):
        body["nextLink"] = req.url(**{"$skiptoken": str(start + page_size)})
    return body

"""The HTTP API plumbing both stand-ins share: requests, the route table, query options, blocking.

Every endpoint is one `Route` in a product's `Routes` table: its methods, its path, its handler and
the ACL it needs (`acl="key:read"`, per the products' API docs; `acl_name` names the path parameter
that holds the object the rule applies to). `BaseAgent.dispatch` is the one place a request goes
through: route lookup (404), method check (405), `authorize` (the hook for ACL enforcement, a no-op
while the stand-ins implement no ACLs), then the handler.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

from .config import parse_duration
from .net import RPCError


class HTTPError(RPCError):
    """An answer with a status code and a plain-text body (how both products report request errors)."""

    def __init__(self, status: int, msg: str, headers: dict | None = None):
        super().__init__(msg, status)
        self.headers = headers or {}


_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


def parse_bool(s: str) -> bool:
    """Go's strconv.ParseBool."""
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise ValueError(f'strconv.ParseBool: parsing "{s}": invalid syntax')


class Request:
    def __init__(self, method: str, path: str, query: dict[str, list[str]], body: bytes, headers):
        self.method, self.path, self.query, self.body, self.headers = method, path, query, body, headers
        self.params: dict[str, str] = {}
        self.route: Route | None = None

    def has(self, k: str) -> bool:
        return k in self.query

    def get(self, k: str, default: str | None = None) -> str | None:
        """url.Values.Get: the first value."""
        v = self.query.get(k)
        return v[0] if v else default

    def all(self, k: str) -> list[str]:
        return list(self.query.get(k) or [])

    def flag(self, k: str) -> bool:
        """Consul's getBoolQueryParam: present without a value is true, else strconv.ParseBool."""
        if k not in self.query:
            return False
        v = self.get(k, "")
        if v == "":
            return True
        try:
            return parse_bool(v)
        except ValueError:
            raise HTTPError(400, f"Invalid value for ?{k}") from None

    def opt_bool(self, k: str, default: bool = False) -> bool:
        """Nomad's parseBool: a non-empty value is parsed with strconv.ParseBool, an empty one is the default."""
        v = self.get(k, "")
        if v == "":
            return default
        try:
            return parse_bool(v)
        except ValueError as e:
            raise HTTPError(500, f'Failed to parse value of "{k}" ({v}) as a bool: {e}') from None

    def uint(self, k: str, default: int = 0) -> int:
        v = self.get(k)
        if v is None or v == "":
            return default
        if not v.isdigit():
            raise HTTPError(400, f'strconv.ParseUint: parsing "{v}": invalid syntax')
        return int(v)

    def json(self, default=None):
        import json
        if not self.body:
            return default
        try:
            return json.loads(self.body)
        except ValueError as e:
            raise HTTPError(400, f"Request decode failed: {e}") from None

    def token(self, header: str) -> str:
        """The request's ACL token: the product's header, `Authorization: Bearer`, or ?token= (Consul)."""
        t = (self.headers.get(header) or "").strip()
        if t:
            return t
        auth = self.headers.get("Authorization") or ""
        parts = auth.split(" ")
        if len(parts) > 1 and parts[0].lower() == "bearer":
            return " ".join(parts[1:]).strip().split(" ")[0]
        return self.get("token", "") or ""


def canon(d, fields: list[str]) -> dict:
    """A decoded JSON object with Go's field matching: an exact name, else a case-insensitive one (encoding/json);
    unknown fields are dropped as Go drops them."""
    if not isinstance(d, dict):
        raise HTTPError(400, f"Request decode failed: json: cannot unmarshal {type(d).__name__} into an object")
    lower = {f.lower(): f for f in fields}
    out = {}
    for k, v in d.items():
        name = k if k in fields else lower.get(str(k).lower())
        if name is not None and (name not in out or k == name):
            out[name] = v
    return out


@dataclass
class Route:
    methods: tuple[str, ...]
    pattern: str
    handler: object
    acl: str | None = None          # "<resource>:<access>" as the API docs list it; None = no ACL required
    acl_name: str | None = None     # the path parameter naming the object of the rule (key, node, service...)
    regex: re.Pattern = field(init=False)

    def __post_init__(self):
        # "<name>" matches one segment, "<name...>" the rest of the path (KV keys)
        def group(m):
            return f"(?P<{m.group(1)}>{'.*' if m.group(2) else '[^/]+'})"
        self.regex = re.compile("^" + re.sub(r"<(\w+)(\.\.\.)?>", group, self.pattern) + "$")


class Routes:
    """A product's route table; handlers are agent methods registered with @routes.add(...)."""

    def __init__(self, parent: Routes | None = None):
        self.table: list[Route] = list(parent.table) if parent else []

    def add(self, methods: str, pattern: str, acl: str | None = None, acl_name: str | None = None):
        def deco(fn):
            self.table.append(Route(tuple(methods.split()), pattern, fn, acl, acl_name))
            return fn
        return deco

    def match(self, path: str) -> list[tuple[Route, dict]]:
        out = []
        for r in self.table:
            m = r.regex.match(path)
            if m:
                out.append((r, m.groupdict()))
        return out


# ---------------------------------------------------------------- blocking queries

@dataclass
class QueryOptions:
    min_index: int = 0
    wait: float = 0.0        # requested (0 = the default)
    stale: bool = False
    consistent: bool = False


def query_options(req: Request, product: str) -> QueryOptions:
    """?index, ?wait, ?stale, ?consistent as the products parse them (errors as they word them)."""
    qo = QueryOptions()
    w = req.get("wait", "")
    if w:
        try:
            qo.wait = parse_duration(w)
        except ValueError:
            raise HTTPError(400, "Invalid wait time") from None
    idx = req.get("index", "")
    if idx:
        if not idx.isdigit():
            raise HTTPError(400, "Invalid index")
        qo.min_index = int(idx)
    if product == "nomad":
        if req.has("stale"):
            v = req.get("stale", "")
            try:
                qo.stale = True if v == "" else parse_bool(v)
            except ValueError:
                raise HTTPError(400, "Expect `true` or `false` for `stale` query string parameter") from None
    else:
        qo.stale = req.has("stale")
        qo.consistent = req.has("consistent")
        if qo.stale and qo.consistent:
            raise HTTPError(400, "Cannot specify ?stale with ?consistent, conflicting semantics.")
    return qo


def block_time(wait: float, default: float, maximum: float) -> float:
    """How long a blocking query may wait: the requested wait (or the default), capped, plus the
    documented jitter of up to wait/16."""
    t = default if wait <= 0 else min(wait, maximum)
    return t + random.uniform(0, t / 16)

"""Agent configuration: load (-config-dir / -config-file, HCL + JSON), merge, check against the
documented keys and types (data/*-agent-config-keys.json), and build runtime settings."""

from __future__ import annotations

import base64
import binascii
import json
import re
from pathlib import Path

from . import hcl
from .hcl import Repeated

try:  # inside a built executable the data files live in the zip
    import importlib.resources as _res

    def _data(name: str) -> str:
        return (_res.files(__package__) / "data" / name).read_text()
except Exception:  # pragma: no cover
    def _data(name: str) -> str:
        return (Path(__file__).parent / "data" / name).read_text()


class ConfigError(ValueError):
    pass


_SCHEMAS: dict[str, dict] = {}


def schema(product: str) -> dict:
    if product not in _SCHEMAS:
        raw = json.loads(_data(f"{product}-agent-config-keys.json"))
        top = {k: v for k, v in raw.items() if not k.startswith("_")}
        extra = {}
        if product == "consul":
            for k, v in raw.get("_in_2022_docs_only", {}).items():
                extra[k] = v
            for k, t in raw.get("_in_config_go_not_in_docs", {}).get("non_user_configurable", {}).items():
                extra[k] = {"type": t if t in _TYPES else "any"}
            dotted = raw.get("_in_config_go_not_in_docs", {}).get("keys", {})
            # service / check definitions are accepted by the agent but not part of the key list
            for k in ("service", "services", "check", "checks"):
                extra[k] = {"type": "any"}
        else:
            dotted = {k: v["type"] if isinstance(v, dict) else v for k, v in raw.get("_in_source_not_in_docs", {}).items()}
        top.update({k: v for k, v in extra.items() if k not in top})
        for path, t in dotted.items():
            _graft(top, path.split("."), t)
        _SCHEMAS[product] = top
    return _SCHEMAS[product]


_TYPES = {"string", "int", "bool", "float", "duration", "list", "map", "object"}


def _graft(tree: dict, parts: list[str], t):
    node = tree
    for p in parts[:-1]:
        if p not in node:
            node[p] = {"type": "object", "children": {}}
        n = node[p]
        if "children" not in n:
            n["children"] = {}
            if n.get("type") not in ("object", "map", "list"):
                n["type"] = "object"
        node = n["children"]
    tt = t if isinstance(t, str) else "any"
    if parts[-1] not in node:
        node[parts[-1]] = {"type": tt if tt in _TYPES else "any"}


_DUR = re.compile(r"^(-?)((\d+(\.\d+)?)(ns|us|µs|ms|s|m|h))+$")
_DUR_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(v) -> float:
    """Go time.ParseDuration -> seconds."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v) / 1e9 if v else 0.0
    if not isinstance(v, str):
        raise ValueError(f"invalid duration {v!r}")
    s = v.strip()
    if s == "0":
        return 0.0
    if not _DUR.match(s):
        raise ValueError(f'time: invalid duration "{v}"')
    total = sum(float(n) * _UNITS[u] for n, u in _DUR_PART.findall(s))
    return -total if s.startswith("-") else total


def format_duration(sec: float) -> str:
    """Go Duration.String() (approximately)."""
    if sec == 0:
        return "0s"
    if sec < 1e-3:
        return f"{sec * 1e6:g}µs"
    if sec < 1:
        return f"{sec * 1e3:.6g}ms"
    h, rem = divmod(sec, 3600)
    m, s = divmod(rem, 60)
    out = ""
    if h:
        out += f"{int(h)}h"
    if h or m:
        out += f"{int(m)}m"
    return out + f"{s:.9g}s"


# ---------------------------------------------------------------- loading

def load_files(paths: list[str], fmt: str | None = None, strict_ext: bool = False) -> list[tuple[str, dict]]:
    """Load config files/dirs in the order given; a directory contributes its *.hcl/*.json
    files in lexical order (like the real agents). Returns [(path, data)]."""
    docs = []
    for p in paths:
        pp = Path(p)
        if pp.is_dir():
            files = sorted(f for f in pp.iterdir() if f.is_file() and (fmt or f.suffix in (".hcl", ".json")))
            for f in files:
                if fmt is None and f.suffix not in (".hcl", ".json"):
                    continue
                docs.append((str(f), _load_one(f, fmt)))
        elif pp.is_file():
            if strict_ext and fmt is None and pp.suffix not in (".hcl", ".json"):
                raise ConfigError(f"failed to load {p}: unknown config format (file name must end in .hcl or .json; "
                                  "use -config-format=hcl|json)")
            docs.append((str(pp), _load_one(pp, fmt)))
        else:
            raise ConfigError(f"Error loading {p}: stat {p}: no such file or directory")
    return docs


def _load_one(path: Path, fmt: str | None) -> dict:
    f = fmt or ("json" if path.suffix == ".json" else "hcl")
    try:
        return hcl.loads(path.read_text(), f)
    except (hcl.HCLError, UnicodeDecodeError) as e:
        raise ConfigError(f"failed to parse {path}: {e}") from e


def merge(a, b):
    """Later config wins for scalars; maps merge; lists append (Consul/Nomad merge semantics)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = dict(a)
        for k, v in b.items():
            out[k] = merge(out[k], v) if k in out else v
        return out
    if isinstance(a, list) and isinstance(b, list) and not isinstance(a, Repeated) and not isinstance(b, Repeated):
        return a + b
    return b


# ---------------------------------------------------------------- checking

# first match wins: bool before int (a bool is an int in Python)
_TYPENAMES = ((bool, "bool"), (int, "int"), (float, "float"), (str, "string"), (list, "list"), (dict, "map"))


def _typename(v):
    return next((name for t, name in _TYPENAMES if isinstance(v, t)), type(v).__name__)


def _coerce(t: str, v, path: str, errors: list[str]):
    """Weakly-typed decode like mapstructure WeaklyTypedInput; returns coerced value."""
    if t in ("any",):
        return v
    if isinstance(v, Repeated) and t not in ("object", "list", "map"):
        v = v[-1]
    elif isinstance(v, Repeated) and t == "list":
        v = [x for item in v for x in (item if isinstance(item, list) else [item])]
    if t == "string":
        if isinstance(v, str):
            return v
        if isinstance(v, (int, float, bool)):
            return str(v).lower() if isinstance(v, bool) else str(v)
    elif t == "int":
        if isinstance(v, bool):
            return int(v)
        if isinstance(v, int):
            return v
        if isinstance(v, float) and v.is_integer():
            return int(v)
        if isinstance(v, str):
            try:
                return int(v, 0)
            except ValueError:
                errors.append(f"{path}: cannot parse '{path}' as int: strconv.ParseInt: parsing {v!r}: invalid syntax")
                return None
    elif t == "float":
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
        if isinstance(v, str):
            try:
                return float(v)
            except ValueError:
                pass
    elif t == "bool":
        if isinstance(v, bool):
            return v
        if isinstance(v, int):
            return v != 0
        if isinstance(v, str) and v.lower() in ("1", "t", "true", "0", "f", "false"):
            return v.lower() in ("1", "t", "true")
        if isinstance(v, str):
            errors.append(f"{path}: cannot parse '{path}' as bool: strconv.ParseBool: parsing {v!r}: invalid syntax")
            return None
    elif t == "duration":
        if isinstance(v, str):
            try:
                parse_duration(v)
                return v
            except ValueError:
                errors.append(f"{path}: invalid duration {v!r} for '{path}' (e.g. \"10s\", \"1m30s\")")
                return None
        if isinstance(v, int) and not isinstance(v, bool):
            if v == 0:
                return v
            # a bare number is decoded to a string and parsed like one: Go's time.ParseDuration wants a unit
            errors.append(f'{path}: invalid duration for \'{path}\': time: missing unit in duration "{v}"')
            return None
    elif t == "list":
        if isinstance(v, list):
            return list(v)
        if isinstance(v, str):
            return [v]
    elif t in ("map", "object"):
        if isinstance(v, dict):
            return v
        if isinstance(v, list) and all(isinstance(x, dict) for x in v):
            out: dict = {}
            for x in v:
                out = merge(out, x)
            return out
    errors.append(f"{path}: '{path}' expected type '{t}', got unconvertible type '{_typename(v)}', value: {_short(v)}")
    return None


def _short(v):
    s = json.dumps(v, default=str)
    return s if len(s) < 60 else s[:57] + "..."


def check(product: str, data: dict) -> tuple[dict, list[str]]:
    """Validate keys and types. Returns (coerced config, errors)."""
    errors: list[str] = []
    out = _check_obj(schema(product), data, "", errors, product)
    return out, errors


def _check_obj(children: dict, data: dict, prefix: str, errors: list[str], product: str) -> dict:
    out = {}
    for k, v in data.items():
        path = f"{prefix}{k}"
        node = children.get(k)
        if node is None:
            if product == "consul":
                errors.append(f"invalid config key {path}")
            else:
                errors.append(f"unexpected keys {path}")
            continue
        out[k] = _check_val(node, v, path, errors, product)
    return out


def _check_val(node: dict, v, path: str, errors: list[str], product: str):
    t = node.get("type", "any")
    if t not in _TYPES:
        t = "any"
    if t == "list" and node.get("item_type") == "object" and node.get("children"):
        # labelled blocks (plugin "raw_exec" {...}) or a list of objects
        if isinstance(v, dict):
            res = {}
            for label, body in v.items():
                body = _coerce("object", body, f"{path}.{label}", errors)
                if body is not None:
                    res[label] = _check_obj(node["children"], body, f"{path}.{label}.", errors, product)
            return res
        if isinstance(v, list):
            return [_check_obj(node["children"], x, f"{path}.", errors, product) if isinstance(x, dict)
                    else _coerce("object", x, path, errors) for x in v]
    cv = _coerce(t, v, path, errors)
    if cv is None:
        return None
    if t == "object" and node.get("children"):
        return _check_obj(node["children"], cv, path + ".", errors, product)
    if t == "map" and node.get("value_type") in _TYPES:
        return {k: _coerce(node["value_type"], x, f"{path}.{k}", errors) for k, x in cv.items()}
    if "values" in node and isinstance(cv, str) and cv and cv.lower() not in [str(x).lower() for x in node["values"]]:
        errors.append(f"{path}: invalid value {cv!r} for '{path}' (one of {', '.join(map(str, node['values']))})")
    return cv


# ---------------------------------------------------------------- product rules

def _valid_key(s) -> bool:
    try:
        return len(base64.b64decode(s, validate=True)) in (16, 24, 32)
    except (binascii.Error, ValueError, TypeError):
        return False


def _template_errors(items: list[tuple[str, object]]) -> list[str]:
    """go-sockaddr templates in address keys must resolve (like the real agents' config builder)."""
    from .sockaddr import TemplateError, render
    errs = []
    for key, v in items:
        if not isinstance(v, str) or "{{" not in v:
            continue
        try:
            if not render(v).strip():
                errs.append(f"{key}: No address found for template {v!r}")
        except TemplateError as ex:
            errs.append(f"{key}: {ex}")
    return errs


def consul_rules(c: dict, for_agent: bool) -> list[str]:
    e = _template_errors([(k, c.get(k)) for k in ("bind_addr", "advertise_addr", "client_addr", "advertise_addr_wan")]
                         + [(f"addresses.{k}", v) for k, v in (c.get("addresses") or {}).items()])
    server = bool(c.get("server"))
    be = c.get("bootstrap_expect") or 0
    if be and not server:
        e.append("'bootstrap_expect > 0' requires 'server = true' (bootstrap_expect is set on a client agent)")
    if be and c.get("bootstrap"):
        e.append("'bootstrap_expect > 0' and 'bootstrap = true' are mutually exclusive")
    if be < 0:
        e.append(f"bootstrap_expect cannot be {be}. Must be greater than or equal to zero")
    if c.get("bootstrap") and not server:
        e.append("'bootstrap = true' requires 'server = true'")
    if not c.get("data_dir"):
        e.append("data_dir cannot be empty")
    dc = c.get("datacenter", "dc1")
    if dc and not re.match(r"^[a-z0-9_-]+$", str(dc)):
        e.append(f"datacenter: invalid datacenter {dc!r}: only lower case alphanumerics, dashes and underscores are allowed")
    if c.get("encrypt") and not _valid_key(c["encrypt"]):
        e.append("encrypt has invalid key: the key must be 32 bytes (16, 24 or 32 bytes), base64-encoded")
    if c.get("read_replica") and not server:
        e.append("'read_replica = true' requires 'server = true'")
    ports = c.get("ports") or {}
    for name, p in ports.items():
        if isinstance(p, int) and (p > 65535 or p < -1):
            e.append(f"ports.{name}: invalid port {p}")
    e += _definition_errors(c)
    return e


def _definition_errors(c: dict) -> list[str]:
    """service/services/check/checks blocks are decoded like the agent decodes them (and refused when they use a
    check type the stand-in does not run)."""
    from .consul_local import check_definition, service_definition
    from .net import RPCError
    errs = []
    for key, fn in (("service", service_definition), ("services", service_definition), ("check", check_definition),
                    ("checks", check_definition)):
        v = c.get(key)
        for raw in (v if isinstance(v, list) else [v] if v is not None else []):
            try:
                fn(raw, c.get("datacenter", "dc1")) if fn is service_definition else fn(raw)
            except (RPCError, ValueError, TypeError, AttributeError) as ex:
                errs.append(f"{key}: {ex}")
    return errs


def nomad_rules(c: dict, for_agent: bool) -> list[str]:
    e = _template_errors([("bind_addr", c.get("bind_addr"))]
                         + [(f"{blk}.{k}", v) for blk in ("addresses", "advertise") for k, v in (c.get(blk) or {}).items()])
    server = c.get("server") or {}
    client = c.get("client") or {}
    if not server.get("enabled") and not client.get("enabled"):
        e.append("Must specify either server, client or dev mode for the agent.")
    if server.get("bootstrap_expect") and not server.get("enabled"):
        e.append("server.bootstrap_expect is set but the server is not enabled (server.enabled = false): bootstrap_expect requires a server")
    if (server.get("bootstrap_expect") or 0) < 0:
        e.append("server.bootstrap_expect must be >= 0")
    if server.get("encrypt") and not _valid_key(server["encrypt"]):
        e.append("server.encrypt: Invalid encryption key: key must be 32 bytes, base64 encoded")
    if for_agent and not c.get("data_dir"):
        e.append('Must specify "data_dir" for production mode (data_dir is empty)')
    for k in ("region", "datacenter"):
        v = c.get(k)
        if v is not None and not re.match(r"^[a-zA-Z0-9_.-]+$", str(v)):
            e.append(f"{k}: invalid value {v!r}")
    return e


# ---------------------------------------------------------------- what the stand-ins implement

ANY = True


def _only(*allowed, why=""):
    """Accept only these values (the ones that switch an unimplemented feature off)."""
    def rule(v, cfg):
        if any(v == a and type(v) is type(a) for a in allowed):
            return None
        shown = " or ".join(json.dumps(a) for a in allowed)
        return f"only {shown} is implemented{(' (' + why + ')') if why else ''}"
    return rule


def _same_as(key):
    def rule(v, cfg):
        return None if v == cfg.get(key, "dc1") else f"only the agent's own {key} is implemented (no WAN federation)"
    return rule


# Every configuration key the stand-ins implement, by dotted path (labelled blocks include their label).
# Any other documented key is refused -- by `validate` and at agent start -- naming the key, so that no
# test passes because the stand-in silently ignored a setting. ANY: every value (and every child key of
# a map) is honoured; a rule function: the values it returns no error for. To implement a feature, add
# its keys here.
IMPLEMENTED: dict[str, dict[str, object]] = {
    "consul": {
        **{k: ANY for k in (
            "datacenter", "data_dir", "log_level", "log_file", "node_name", "node_id", "node_meta", "server", "bootstrap",
            "bootstrap_expect", "bind_addr", "advertise_addr", "client_addr", "addresses.http", "ports.http",
            "ports.serf_lan", "ports.server", "retry_join", "retry_interval", "retry_max", "start_join", "encrypt",
            "disable_keyring_file", "leave_on_terminate", "skip_leave_on_interrupt", "rejoin_after_leave",
            "performance.raft_multiplier", "autopilot.cleanup_dead_servers", "autopilot.last_contact_threshold",
            "autopilot.server_stabilization_time", "autopilot.max_trailing_logs", "autopilot.min_quorum",
            "ui_config.enabled", "ui", "pid_file", "service", "services", "check", "checks", "session_ttl_min",
            "limits.kv_max_value_size", "limits.txn_max_req_len", "max_query_time", "default_query_time", "disable_update_check",
            "telemetry.prometheus_retention_time", "telemetry.disable_hostname",
            # TLS (tls.py): the HTTPS API and internal RPC
            "ports.https", "addresses.https",
            *(f"tls.{s}.{k}" for s in ("defaults", "internal_rpc", "https")
              for k in ("ca_file", "cert_file", "key_file", "verify_incoming", "verify_outgoing")),
            "tls.internal_rpc.verify_server_hostname",
            # ACLs (acl.py, consul_acl.py)
            "acl.enabled", "acl.enable_token_persistence", "acl.tokens.initial_management", "acl.tokens.agent",
            "acl.tokens.default")},
        "acl.default_policy": _only("allow", "deny", why="Consul's two default policies"),
        "primary_datacenter": _same_as("datacenter"),
        "raft_protocol": _only(3),
        "ports.dns": _only(-1, why="the stand-in serves no DNS"),
        "ports.grpc": _only(-1, why="the stand-in serves no gRPC"),
        "ports.grpc_tls": _only(-1, why="the stand-in serves no gRPC"),
        "ports.serf_wan": _only(-1, why="no WAN gossip"),
        "connect.enabled": _only(False, why="no service mesh"),
        "enable_script_checks": _only(False, why="no script checks"),
        "enable_local_script_checks": _only(False, why="no script checks"),
    },
    "nomad": {
        **{k: ANY for k in (
            "region", "datacenter", "name", "data_dir", "log_level", "log_file", "bind_addr", "addresses.http",
            "addresses.rpc", "addresses.serf", "advertise.http", "advertise.rpc", "advertise.serf", "ports.http",
            "ports.rpc", "ports.serf", "leave_on_terminate", "leave_on_interrupt", "disable_update_check",
            "server.enabled", "server.bootstrap_expect", "server.encrypt", "server.server_join", "server.retry_join",
            "server.start_join", "server.retry_interval", "server.retry_max", "server.heartbeat_grace",
            "server.min_heartbeat_ttl", "server.raft_multiplier", "server.rejoin_after_leave",
            "client.enabled", "client.node_class", "client.node_pool", "client.servers", "client.server_join",
            "client.meta", "client.drain_on_shutdown", "plugin.raw_exec.config.enabled",
            "telemetry.publish_allocation_metrics", "telemetry.publish_node_metrics", "telemetry.prometheus_metrics",
            "telemetry.collection_interval", "telemetry.disable_hostname",
            "autopilot.cleanup_dead_servers", "autopilot.last_contact_threshold", "autopilot.max_trailing_logs",
            "autopilot.min_quorum", "autopilot.server_stabilization_time",
            "consul.address", "consul.auto_advertise", "consul.server_service_name", "consul.client_service_name",
            "consul.server_auto_join", "consul.client_auto_join", "consul.tags", "consul.checks_use_advertise",
            "consul.server_http_check_name", "consul.server_serf_check_name", "consul.server_rpc_check_name",
            "consul.client_http_check_name", "consul.timeout",
            *(f"tls.{k}" for k in ("http", "rpc", "ca_file", "cert_file", "key_file", "verify_server_hostname",
                                   "verify_https_client", "rpc_upgrade_mode")),
            "acl.enabled")},
        "consul.ssl": _only(False, why="no TLS yet"),
        "server.raft_protocol": _only(3),
    },
}


def unsupported(product: str, cfg: dict) -> list[str]:
    """The keys (and values) of a merged, type-checked config that the stand-in does not implement."""
    rules = IMPLEMENTED[product]
    errs: list[str] = []

    def walk(d: dict, prefix: str):
        for k, v in d.items():
            path = prefix + str(k)
            rule = rules.get(path)
            if rule is ANY:
                continue
            if callable(rule):
                why = rule(v, cfg)
                if why:
                    errs.append(f"{path}: the value {json.dumps(v, default=str)} is not implemented by the sandbox "
                                f"{product} stand-in: {why}")
                continue
            if isinstance(v, dict) and any(r.startswith(path + ".") for r in rules):
                walk(v, path + ".")
                continue
            errs.append(f"{path}: not implemented by the sandbox {product} stand-in (refused rather than ignored)")

    walk(cfg, "")
    return errs


def load_and_check(product: str, paths: list[str], fmt: str | None = None, for_agent: bool = True) -> tuple[dict, list[str]]:
    """Returns (merged config, errors). Errors name the key."""
    try:
        docs = load_files(paths, fmt, strict_ext=product == "consul")
    except ConfigError as e:
        return {}, [str(e)]
    merged: dict = {}
    errors: list[str] = []
    for path, d in docs:
        cd, errs = check(product, d)
        errors += [f"{path}: {x}" for x in errs]
        merged = merge(merged, cd)
    if errors:
        return merged, errors
    rules = consul_rules if product == "consul" else nomad_rules
    errors += rules(merged, for_agent)
    errors += unsupported(product, merged)
    return merged, errors


def resolve_addr(v: str | None, default: str, multi: bool = False) -> str:
    """Render go-sockaddr templates; the first address (or all, space separated, when multi)."""
    from .sockaddr import render
    if not v:
        return default
    out = render(v).split()
    if not out:
        return default
    return " ".join(out) if multi else out[0]

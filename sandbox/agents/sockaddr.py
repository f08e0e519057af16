"""Minimal go-sockaddr template evaluation ({{ GetPrivateIP }}, {{ GetInterfaceIP "eth0" }}, ...)."""

from __future__ import annotations

import fcntl
import ipaddress
import re
import shlex
import socket
import struct

_SIOCGIFADDR = 0x8915
_SIOCGIFNETMASK = 0x891B
_SIOCGIFFLAGS = 0x8913
_IFF_UP = 0x1
_IFF_LOOPBACK = 0x8


class TemplateError(ValueError):
    pass


def _ioctl_addr(sock, name: str, req: int):
    try:
        res = fcntl.ioctl(sock.fileno(), req, struct.pack("256s", name[:15].encode()))
    except OSError:
        return None
    return socket.inet_ntoa(res[20:24])


def interfaces() -> list[dict]:
    """IPv4 interface addresses: [{name, address, netmask, up, loopback}] (first address per interface)."""
    out = []
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for _idx, name in socket.if_nameindex():
            addr = _ioctl_addr(s, name, _SIOCGIFADDR)
            if not addr:
                continue
            mask = _ioctl_addr(s, name, _SIOCGIFNETMASK) or "255.255.255.255"
            try:
                flags = struct.unpack("H", fcntl.ioctl(s.fileno(), _SIOCGIFFLAGS, struct.pack("256s", name[:15].encode()))[16:18])[0]
            except OSError:
                flags = 0
            out.append({"name": name, "address": addr, "netmask": mask,
                        "up": bool(flags & _IFF_UP), "loopback": bool(flags & _IFF_LOOPBACK)})
    finally:
        s.close()
    return out


def _is_private(addr: str) -> bool:
    ip = ipaddress.ip_address(addr)
    return ip.is_private and not ip.is_loopback and not ip.is_link_local


def _filter(ifaces, op, selector, value):
    keep = []
    rx = re.compile(value)
    for i in ifaces:
        if selector == "name":
            m = bool(rx.search(i["name"]))
        elif selector in ("address", "ip"):
            m = bool(rx.search(i["address"]))
        elif selector == "type":
            m = value.lower() in ("ipv4", "ip")
        elif selector == "flags":
            flags = {"up" if i["up"] else "down"}
            if i["loopback"]:
                flags.add("loopback")
            m = value in flags
        elif selector == "rfc":
            m = value in ("1918", "6890") and _is_private(i["address"])
        elif selector == "network":
            m = ipaddress.ip_address(i["address"]) in ipaddress.ip_network(value, strict=False)
        else:
            raise TemplateError(f"unsupported selector {selector!r}")
        if m == (op == "include"):
            keep.append(i)
    return keep


def _eval(expr: str):
    stages = [s.strip() for s in expr.split("|")]
    cur = None
    for st in stages:
        parts = shlex.split(st)
        if not parts:
            raise TemplateError("empty template stage")
        fn, args = parts[0], parts[1:]
        if fn == "GetPrivateIP":
            ips = [i["address"] for i in interfaces() if i["up"] and not i["loopback"] and _is_private(i["address"])]
            cur = ips[0] if ips else ""
        elif fn == "GetPublicIP":
            ips = [i["address"] for i in interfaces() if i["up"] and not i["loopback"] and not _is_private(i["address"])]
            cur = ips[0] if ips else ""
        elif fn == "GetInterfaceIP":
            if len(args) != 1:
                raise TemplateError("GetInterfaceIP takes one argument")
            ips = [i["address"] for i in interfaces() if i["name"] == args[0]]
            if not ips:
                raise TemplateError(f"unable to find interface {args[0]!r}")
            cur = ips[0]
        elif fn == "GetAllInterfaces":
            cur = interfaces()
        elif fn == "GetPrivateInterfaces":
            cur = [i for i in interfaces() if i["up"] and _is_private(i["address"])]
        elif fn == "GetPublicInterfaces":
            cur = [i for i in interfaces() if i["up"] and not i["loopback"] and not _is_private(i["address"])]
        elif fn in ("include", "exclude"):
            if not isinstance(cur, list) or len(args) != 2:
                raise TemplateError(f"{fn} needs an interface list and 2 arguments")
            cur = _filter(cur, fn, args[0], args[1])
        elif fn == "sort":
            cur = sorted(cur, key=lambda i: i["name"] if args and args[0] == "name" else socket.inet_aton(i["address"]))
        elif fn == "limit":
            cur = cur[: int(args[0])]
        elif fn == "attr":
            key = {"address": "address", "name": "name", "netmask": "netmask"}.get(args[0])
            if key is None:
                raise TemplateError(f"unsupported attr {args[0]!r}")
            cur = cur[0][key] if cur else ""
        elif fn == "join":
            key = args[0]
            cur = args[1].join(i[key] for i in cur)
        else:
            raise TemplateError(f'function "{fn}" not defined')
    if isinstance(cur, list):
        cur = " ".join(i["address"] for i in cur)
    return cur


def render(value: str) -> str:
    """Render every {{ ... }} in value."""
    if "{{" not in value:
        return value

    def repl(m):
        return str(_eval(m.group(1)))

    try:
        return re.sub(r"\{\{(.*?)\}\}", repl, value)
    except (TemplateError, ValueError, IndexError) as e:
        raise TemplateError(f"Failed to parse address template {value!r}: {e}") from e

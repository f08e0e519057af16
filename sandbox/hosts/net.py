"""Kernel networking of a sandbox: bridges per network, netns + veth per host, nftables.

Names carry the sandbox tag (4 hex chars of the run dir hash) so several sandboxes never
collide and ``down --all`` finds everything of its own sandbox, also after a crash:

- bridge of network #i:  ``hb<tag>n<i>``  (gateway address = first usable of the subnet)
- veth of host #i:       ``hb<tag>h<i>`` on the controller, ``eth0`` inside ``hsb-<tag>-<name>``
- nftables table:        ``inet hsb_<tag>`` (regenerated from state after every change)

Forwarding policy (table ``hsb_<tag>``, chain forward): traffic between two hosts of one
network that crosses subnets is routed by the controller and accepted; traffic between
networks is accepted only for connected (peered) pairs, in both directions; everything else
entering or leaving a sandbox bridge through the controller is dropped (hosts reach neither
other networks nor the outside world). Same-subnet traffic is bridged (layer 2). Chain input:
a host reaches the controller itself only at its own network's gateway addresses and through
the DNATs below.

IMDS and ARM: ``169.254.169.254:80`` and ``<gateway>:443`` are DNAT'ed to the IMDS server
and to the ARM emulator on 127.0.0.1 (and ``<gateway>:PORT`` of ``expose``d services) (``route_localnet`` on the sandbox bridges only), so the
source address of a request is the host's own address.
"""

from __future__ import annotations

import hashlib
import ipaddress
import subprocess
from pathlib import Path

IMDS_IP = "169.254.169.254"


def run(*cmd: str, check: bool = True, quiet: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), check=check, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE if quiet else None)


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def netns_exists(name: str) -> bool:
    return Path("/run/netns", name).exists()


def sysctl(path: str, value: str) -> None:
    p = Path("/proc/sys", path)
    if p.read_text().strip() != value:
        p.write_text(value)


def bridge_name(tag: str, index: int) -> str:
    return f"hb{tag}n{index}"


def veth_name(tag: str, index: int) -> str:
    return f"hb{tag}h{index}"


def netns_name(tag: str, host: str) -> str:
    return f"hsb-{tag}-{host}"


def gateway_for(cidr: str) -> str:
    net = ipaddress.ip_network(cidr, strict=False)
    return str(next(net.hosts()))


def bridge_mac(name: str) -> str:
    """Fixed, locally administered MAC of a bridge. Without it the bridge takes the lowest MAC
    of its ports and changes it when that port goes away (a host deleted), leaving the other
    hosts with a stale ARP entry for their gateway."""
    d = hashlib.sha256(name.encode()).digest()
    return "02:" + ":".join(f"{b:02x}" for b in d[:5])


def ensure_bridge(name: str, gateways: list[tuple[str, int]]) -> None:
    if not link_exists(name):
        run("ip", "link", "add", name, "address", bridge_mac(name), "type", "bridge",
            "stp_state", "0", "forward_delay", "0")
    have = run("ip", "-o", "-4", "addr", "show", "dev", name).stdout
    for gw, plen in gateways:
        if f" {gw}/{plen} " not in have:
            run("ip", "addr", "add", f"{gw}/{plen}", "dev", name)
    run("ip", "link", "set", name, "up")
    sysctl(f"net/ipv4/conf/{name}/route_localnet", "1")
    sysctl("net/ipv4/ip_forward", "1")


def delete_link(name: str) -> None:
    if link_exists(name):
        run("ip", "link", "del", name, check=False, quiet=True)


def create_host_net(ns: str, veth: str, bridge: str, ip: str, plen: int, gw: str) -> None:
    if netns_exists(ns):
        run("ip", "netns", "del", ns, check=False, quiet=True)
    delete_link(veth)
    run("ip", "netns", "add", ns)
    run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
    run("ip", "link", "set", veth, "master", bridge, "up")
    run("ip", "-n", ns, "link", "set", "lo", "up")
    run("ip", "-n", ns, "addr", "add", f"{ip}/{plen}", "dev", "eth0")
    run("ip", "-n", ns, "link", "set", "eth0", "up")
    run("ip", "-n", ns, "route", "add", "default", "via", gw, "dev", "eth0", "onlink")


def delete_netns(ns: str, veth: str | None = None) -> None:
    if netns_exists(ns):
        run("ip", "netns", "del", ns, check=False, quiet=True)
    if veth:
        delete_link(veth)


def nft_table(tag: str) -> str:
    return f"hsb_{tag}"


def ruleset(st: dict) -> str:
    """The nftables table of the sandbox described by ``st``."""
    tag = st["tag"]
    nets = st["networks"]
    lines = [f"table inet {nft_table(tag)} {{"]
    lines.append("  chain forward {")
    lines.append("    type filter hook forward priority filter - 5; policy accept;")
    lines.append("    ct state established,related accept")
    for n in nets.values():
        lines.append(f'    iifname "{n["bridge"]}" oifname "{n["bridge"]}" accept')
    for a, b in st["peerings"]:
        if a in nets and b in nets:
            ba, bb = nets[a]["bridge"], nets[b]["bridge"]
            lines.append(f'    iifname "{ba}" oifname "{bb}" accept')
            lines.append(f'    iifname "{bb}" oifname "{ba}" accept')
    lines.append(f'    iifname "hb{tag}n*" drop')
    lines.append(f'    oifname "hb{tag}n*" drop')
    lines.append("  }")
    # Hosts reach the controller only at their own network's gateways (any port: SSH replies,
    # services bound there) and through the DNATs below; not at other networks' gateways.
    lines.append("  chain input {")
    lines.append("    type filter hook input priority filter - 5; policy accept;")
    lines.append("    ct state established,related accept")
    lines.append("    ct status dnat accept")
    for n in nets.values():
        gws = ", ".join(gw[0] for gw in n["gateways"])
        if gws:
            lines.append(f'    iifname "{n["bridge"]}" ip daddr {{ {gws} }} accept')
    lines.append(f'    iifname "hb{tag}n*" meta nfproto ipv4 drop')
    lines.append("  }")
    lines.append("  chain prerouting {")
    lines.append("    type nat hook prerouting priority dstnat; policy accept;")
    imds = st.get("imds") or {}
    if imds.get("port"):
        lines.append(f'    iifname "hb{tag}n*" ip daddr {IMDS_IP} tcp dport 80 '
                     f'dnat ip to 127.0.0.1:{imds["port"]}')
    arm = st.get("arm") or {}
    if arm.get("port"):
        for n in nets.values():
            for gw in n["gateways"]:
                lines.append(f'    iifname "{n["bridge"]}" ip daddr {gw[0]} tcp dport 443 '
                             f'dnat ip to 127.0.0.1:{arm["port"]}')
    for port, to in sorted((st.get("exposed") or {}).items()):
        for n in nets.values():
            for gw in n["gateways"]:
                lines.append(f'    iifname "{n["bridge"]}" ip daddr {gw[0]} tcp dport {int(port)} '
                             f'dnat ip to 127.0.0.1:{int(to)}')
    lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def apply_ruleset(st: dict) -> None:
    table = nft_table(st["tag"])
    script = f"table inet {table}\ndelete table inet {table}\n" + ruleset(st)
    subprocess.run(["nft", "-f", "-"], input=script, text=True, check=True)


def delete_ruleset(tag: str) -> None:
    subprocess.run(["nft", "delete", "table", "inet", nft_table(tag)], check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def leftover_links(tag: str) -> list[str]:
    return sorted(p.name for p in Path("/sys/class/net").iterdir() if p.name.startswith(f"hb{tag}"))


def leftover_netns(tag: str) -> list[str]:
    d = Path("/run/netns")
    return sorted(p.name for p in d.iterdir() if p.name.startswith(f"hsb-{tag}-")) if d.exists() else []

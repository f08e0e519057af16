"""Microsoft.Network: virtual networks, subnets, peerings, network security groups, network
interfaces (standalone for Flexible scale sets, scale-set views for Uniform) and private IP allocation."""
from __future__ import annotations

import ipaddress
import time

from .. import registry
from ..errors import ArmError, bad_request, not_found
from ..lro import job
from ..router import RG, SUB, Response, paged, route, type_path
from ..util import check_name, deep, etag, get_path, new_guid, normalize_location
from .resources import list_routes, require_rg

NS = "Microsoft.Network"

# api-versions: the stable folders of azure-rest-api-specs
# specification/network/resource-manager/Microsoft.Network/stable/ (and, from 2025-05-01 on, the
# Microsoft.Network/Network/stable/ layout) that hold virtualNetwork.json; the python multi-api batch in
# .../network/resource-manager/readme.python.md lists 2015-06-15 and 2016-09-01 ... 2020-03-01; each later
# folder was looked up in the index (there is no 2023-04-01 and no 2024-10-01). azure-mgmt-network 33
# sends 2025-05-01 ... 2026-03-01.
NETWORK_VERSIONS = (
    "2015-06-15", "2016-09-01", "2016-12-01", "2017-03-01", "2017-06-01", "2017-08-01", "2017-09-01", "2017-10-01",
    "2017-11-01", "2018-01-01", "2018-02-01", "2018-04-01", "2018-06-01", "2018-07-01", "2018-08-01", "2018-10-01",
    "2018-11-01", "2018-12-01", "2019-02-01", "2019-04-01", "2019-06-01", "2019-07-01", "2019-08-01", "2019-09-01",
    "2019-11-01", "2019-12-01", "2020-03-01", "2020-04-01", "2020-05-01", "2020-06-01", "2020-07-01", "2020-08-01",
    "2020-11-01", "2021-02-01", "2021-03-01", "2021-05-01", "2021-08-01", "2022-01-01", "2022-05-01", "2022-07-01",
    "2022-09-01", "2022-11-01", "2023-02-01", "2023-05-01", "2023-06-01", "2023-09-01", "2023-11-01", "2024-01-01",
    "2024-03-01", "2024-05-01", "2024-07-01", "2025-01-01", "2025-03-01", "2025-05-01", "2025-07-01", "2025-09-01",
    "2026-01-01", "2026-03-01")
PROVIDER = registry.provider(NS, "azure-rest-api-specs Microsoft.Network stable folders")
for _t in ("virtualNetworks", "virtualNetworks/subnets", "virtualNetworks/virtualNetworkPeerings",
           "networkSecurityGroups", "networkSecurityGroups/securityRules", "networkInterfaces", "publicIPAddresses",
           "locations", "locations/operations", "locations/operationResults"):
    PROVIDER.resource_type(_t, NETWORK_VERSIONS)
VNET = "Microsoft.Network/virtualNetworks"
SUBNET = "Microsoft.Network/virtualNetworks/subnets"
PEERING = "Microsoft.Network/virtualNetworks/virtualNetworkPeerings"
NSG = "Microsoft.Network/networkSecurityGroups"
NIC = "Microsoft.Network/networkInterfaces"
VMSS_NIC = "Microsoft.Compute/virtualMachineScaleSets/virtualMachines/networkInterfaces"

V = type_path(RG, VNET, "vnet")
N = type_path(RG, NSG, "nsg")

DEFAULT_RULES = [
    ("AllowVnetInBound", "Allow inbound traffic from all VMs in VNET", "Allow", "VirtualNetwork", "VirtualNetwork",
     "Inbound", 65000),
    ("AllowAzureLoadBalancerInBound", "Allow inbound traffic from azure load balancer", "Allow", "AzureLoadBalancer",
     "*", "Inbound", 65001),
    ("DenyAllInBound", "Deny all inbound traffic", "Deny", "*", "*", "Inbound", 65500),
    ("AllowVnetOutBound", "Allow outbound traffic from all VMs to all VMs in VNET", "Allow", "VirtualNetwork",
     "VirtualNetwork", "Outbound", 65000),
    ("AllowInternetOutBound", "Allow outbound traffic from all VMs to Internet", "Allow", "*", "Internet",
     "Outbound", 65001),
    ("DenyAllOutBound", "Deny all outbound traffic", "Deny", "*", "*", "Outbound", 65500),
]


def _id(app, rg, *parts) -> str:
    return f"/subscriptions/{app.sub}/resourceGroups/{rg}/providers/{NS}/" + "/".join(parts)


def _net(text: str, field: str) -> ipaddress.IPv4Network:
    try:
        return ipaddress.ip_network(text, strict=True)
    except (ValueError, TypeError):
        raise bad_request("InvalidAddressPrefixFormat",
                          f"Address prefix {text} of resource {field} is not formatted correctly. "
                          "It should follow CIDR notation, for example 10.0.0.0/24.") from None


def _write_response(app, req, rec, created: bool, hook: str | None = None, extra: dict | None = None) -> Response:
    """Network PUT answer: 201/200, provisioningState Updating, Azure-AsyncOperation; job finishes it."""
    body = rec["body"]
    location = _location_of(app, body["id"])
    op = app.lro.start(req, NS, location, "net_provision", {"rid": body["id"], "hook": hook, **(extra or {})},
                       body["id"], settle=_settle(app))
    view = render(app, rec)
    view["properties"]["provisioningState"] = "Updating"
    return Response(201 if created else 200, view, app.lro.headers(op, location=False))


def _location_of(app, rid: str) -> str:
    parts = rid.split("/")
    vnet_or_nsg = app.store.get("/".join(parts[:9]))
    return vnet_or_nsg["body"].get("location", "eastus") if vnet_or_nsg else "eastus"


def _settle(app) -> float:
    return 0.2 if app.config.network_seconds == 0 else 0.0


@job("net_provision")
def net_provision(app, op, rid, hook=None, **extra):
    time.sleep(app.config.network_seconds)
    rec = app.store.get(rid)
    if rec is None:
        return None
    if hook == "vnet_created":
        prefixes = list(rec["body"]["properties"]["addressSpace"]["addressPrefixes"])
        app.backend.network_created(rec["body"]["id"], prefixes)
    if hook == "peered":
        _sync_peering_state(app, rid)
    with app.store.lock:
        rec["body"]["properties"]["provisioningState"] = "Succeeded"
        if rec["body"]["type"] == VNET:  # subnets created or updated inline by the network's PUT
            for s in app.store.of_type(SUBNET, rid):
                s["body"]["properties"]["provisioningState"] = "Succeeded"
        app.store.touch()
    return None


@job("net_delete")
def net_delete(app, op, rid):
    time.sleep(app.config.network_seconds)
    rec = app.store.get(rid)
    if rec is None:
        return None
    rtype = rec["body"]["type"]
    if rtype == VNET:
        delete_vnet_now(app, rid)
    elif rtype == PEERING:
        _delete_peering_now(app, rid)
    else:
        app.store.delete(rid)
    return None


def _accepted_delete(app, req, rid) -> Response:
    with app.store.lock:
        rec = app.store.get(rid)
        if rec is None:
            return Response(204)
        rec["body"]["properties"]["provisioningState"] = "Deleting"
    op = app.lro.start(req, NS, _location_of(app, rid), "net_delete", {"rid": rec["body"]["id"]}, rid,
                       settle=_settle(app))
    return app.lro.accepted(op)


def render(app, rec) -> dict:
    body = deep(rec["body"])
    t = body["type"]
    if t == VNET:
        body["properties"]["subnets"] = [render(app, s) for s in app.store.of_type(SUBNET, body["id"])]
        body["properties"]["virtualNetworkPeerings"] = [render(app, p) for p in app.store.of_type(PEERING, body["id"])]
    elif t == SUBNET:
        ipc = sorted(rec["x"].get("allocated", {}).values())
        if ipc:
            body["properties"]["ipConfigurations"] = [{"id": i} for i in ipc]
    elif t == NSG:
        subs = [s["body"]["id"] for s in app.store.of_type(SUBNET)
                if get_path(s["body"], "properties.networkSecurityGroup.id", "").lower() == body["id"].lower()]
        if subs:
            body["properties"]["subnets"] = [{"id": i} for i in subs]
    return body


def _get(app, rid, rtype, name, rg):
    rec = app.store.get(rid)
    if rec is None:
        require_rg(app, rg)
        raise not_found(rtype, name, rg)
    return rec


# -- virtual networks ------------------------------------------------------------------------------
@route("PUT", V)
def put_vnet(app, req, sub, rg, vnet):
    require_rg(app, rg)
    check_name(vnet, 64)
    body = req.body or {}
    rid = _id(app, rg, "virtualNetworks", vnet)
    location = normalize_location(body.get("location"), VNET)
    props = body.get("properties") or {}
    prefixes = (props.get("addressSpace") or {}).get("addressPrefixes") or []
    if not prefixes:
        raise bad_request("InvalidRequestFormat", "Cannot parse the request. VirtualNetwork address space is missing.")
    nets = [_net(p, rid) for p in prefixes]
    with app.store.lock:
        old, new = _top_level_put(app, rid, VNET, vnet, rg, location, body, {
            "addressSpace": {"addressPrefixes": list(prefixes)},
            "enableDdosProtection": bool(props.get("enableDdosProtection", False)),
            "enableVmProtection": bool(props.get("enableVmProtection", False)),
            "privateEndpointVNetPolicies": "Disabled"})
        for key in ("flowTimeoutInMinutes", "dhcpOptions", "encryption"):
            if key in props:
                new["properties"][key] = props[key]
        # A PUT replaces the network: subnets it does not list are deleted (as in ARM).
        wanted = {(s.get("name") or "").lower(): s for s in props.get("subnets") or []}
        existing = app.store.of_type(SUBNET, rid)
        for s in existing:
            if s["body"]["name"].lower() not in wanted and s["x"].get("allocated"):
                raise _subnet_in_use(s, vnet)
        for s in existing:
            if s["body"]["name"].lower() not in wanted:
                app.store.delete(s["body"]["id"])
        app.store.put(new, old["x"] if old else {})
        seen = []
        for s in props.get("subnets") or []:
            name = s.get("name")
            if not name:
                raise bad_request("InvalidRequestFormat", "Cannot parse the request. Subnet name is missing.")
            _upsert_subnet(app, rg, new, name, s.get("properties") or {}, nets, seen)
    return _write_response(app, req, app.store.get(rid), old is None, hook="vnet_created" if old is None else None)


def _top_level_put(app, rid, rtype, name, rg, location, body, props) -> tuple[dict | None, dict]:
    """(existing record, new body) for a PUT of a virtual network or security group (store lock held):
    name, id and resourceGuid stay those of an existing resource, whose location may not change;
    properties are provisioningState, resourceGuid, then props; tags as the request gives them."""
    old = app.store.get(rid)
    if old and old["body"]["location"] != location:
        raise _location_conflict(name, old["body"]["location"], rg, location)
    new = {"name": old["body"]["name"] if old else name, "id": old["body"]["id"] if old else rid, "etag": etag(),
           "type": rtype, "location": location,
           "properties": {"provisioningState": "Updating",
                          "resourceGuid": old["body"]["properties"]["resourceGuid"] if old else new_guid(), **props}}
    if body.get("tags") is not None:
        new["tags"] = body["tags"]
    return old, new


def _location_conflict(name, old, rg, new) -> ArmError:
    return ArmError(400, "InvalidResourceLocation",
                    f"The resource '{name}' already exists in location '{old}' in resource group '{rg}'. A resource "
                    f"with the same name cannot be created in location '{new}'. Please select a new resource name.")


def _subnet_in_use(s, vnet) -> ArmError:
    owner = sorted(s["x"]["allocated"].values())[0]
    return bad_request("InUseSubnetCannotBeDeleted",
                       f"Subnet {s['body']['name']} is in use by {owner} and cannot be deleted. In order to delete the "
                       "subnet, delete all the resources within the subnet. See aka.ms/deletesubnet.")


def _upsert_subnet(app, rg, vnet_body, name, props, nets, seen) -> dict:
    check_name(name)
    rid = vnet_body["id"] + "/subnets/" + name
    prefix = props.get("addressPrefix") or (props.get("addressPrefixes") or [None])[0]
    if not prefix:
        raise bad_request("InvalidRequestFormat", f"Cannot parse the request. Subnet {name} address prefix is missing.")
    net = _net(prefix, rid)
    if not any(net.subnet_of(v) for v in nets if v.version == net.version):
        raise bad_request("NetcfgInvalidSubnet", f"Subnet '{name}' is not valid in virtual network "
                                                 f"'{vnet_body['name']}'.")
    siblings = [(s["body"]["name"], s["body"]["properties"]["addressPrefix"])
                for s in app.store.of_type(SUBNET, vnet_body["id"]) if s["body"]["name"].lower() != name.lower()]
    for other_name, other_prefix in siblings + seen:
        if other_name.lower() != name.lower() and net.overlaps(ipaddress.ip_network(other_prefix)):
            raise bad_request("NetcfgSubnetRangesOverlap",
                              f"Subnet '{name}' is not valid because its IP address range overlaps with that of an "
                              f"existing subnet '{other_name}' in virtual network '{vnet_body['name']}'.")
    seen.append((name, prefix))
    old = app.store.get(rid)
    if old and old["x"].get("allocated") and old["body"]["properties"]["addressPrefix"] != prefix:
        raise bad_request("InUseSubnetCannotBeUpdated",
                          f"Subnet {name} is in use and cannot be updated.")
    new_props = {"provisioningState": "Updating", "addressPrefix": prefix, "delegations": props.get("delegations", []),
                 "privateEndpointNetworkPolicies": props.get("privateEndpointNetworkPolicies", "Disabled"),
                 "privateLinkServiceNetworkPolicies": props.get("privateLinkServiceNetworkPolicies", "Enabled")}
    nsg_ref = (props.get("networkSecurityGroup") or {}).get("id")
    if nsg_ref:
        nsg = app.store.get(nsg_ref)
        if not nsg:
            raise invalid_reference(app, nsg_ref, rid)
        new_props["networkSecurityGroup"] = {"id": nsg["body"]["id"]}
    for key in ("serviceEndpoints", "routeTable", "natGateway", "defaultOutboundAccess"):
        if key in props:
            new_props[key] = props[key]
    body = {"name": old["body"]["name"] if old else name, "id": old["body"]["id"] if old else rid, "etag": etag(),
            "properties": new_props, "type": SUBNET}
    return app.store.put(body, old["x"] if old else {"allocated": {}})


def invalid_reference(app, ref, by) -> ArmError:
    return bad_request("InvalidResourceReference",
                       f"Resource {ref} referenced by resource {by} was not found. Please make sure that the "
                       "referenced resource exists, and that both resources are in the same region.")


@route("GET", V)
def get_vnet(app, req, sub, rg, vnet):
    return Response(200, render(app, _get(app, _id(app, rg, "virtualNetworks", vnet), VNET, vnet, rg)))


@route("DELETE", V)
def delete_vnet(app, req, sub, rg, vnet):
    rid = _id(app, rg, "virtualNetworks", vnet)
    for s in app.store.of_type(SUBNET, rid):
        if s["x"].get("allocated"):
            raise _subnet_in_use(s, vnet)
    return _accepted_delete(app, req, rid)


def delete_vnet_now(app, rid: str) -> None:
    rec = app.store.get(rid)
    if rec is None:
        return
    for p in app.store.of_type(PEERING, rid):
        _delete_peering_now(app, p["body"]["id"])
    for p in app.store.of_type(PEERING):  # remote sides pointing at us become Disconnected
        if p["body"]["properties"]["remoteVirtualNetwork"]["id"].lower() == rid.lower():
            with app.store.lock:
                p["body"]["properties"]["peeringState"] = "Disconnected"
                app.store.touch()
    for s in app.store.of_type(SUBNET, rid):
        app.store.delete(s["body"]["id"])
    app.store.delete(rid)
    app.backend.network_deleted(rec["body"]["id"])


list_routes(VNET, render)


# -- subnets ---------------------------------------------------------------------------------------
@route("PUT", V + r"/subnets/(?P<subnet>[^/]+)")
def put_subnet(app, req, sub, rg, vnet, subnet):
    vrec = _get(app, _id(app, rg, "virtualNetworks", vnet), VNET, vnet, rg)
    props = (req.body or {}).get("properties") or {}
    nets = [ipaddress.ip_network(p) for p in vrec["body"]["properties"]["addressSpace"]["addressPrefixes"]]
    with app.store.lock:
        created = app.store.get(vrec["body"]["id"] + "/subnets/" + subnet) is None
        rec = _upsert_subnet(app, rg, vrec["body"], subnet, props, nets, [])
    return _write_response(app, req, rec, created)


def _vnet_child_routes(kind: str, group: str) -> None:
    """GET one and GET the list of a virtual network's children of one kind (``subnets``,
    ``virtualNetworkPeerings``); the child's name is the route group ``group``."""
    @route("GET", V + rf"/{kind}/(?P<{group}>[^/]+)")
    def get_child(app, req, sub, rg, vnet, **child):
        _get(app, _id(app, rg, "virtualNetworks", vnet), VNET, vnet, rg)
        rec = app.store.get(_id(app, rg, "virtualNetworks", vnet, kind, child[group]))
        if rec is None:
            raise not_found(VNET + "/" + vnet + "/" + kind, child[group], rg)
        return Response(200, render(app, rec))

    @route("GET", V + rf"/{kind}")
    def list_children(app, req, sub, rg, vnet):
        vrec = _get(app, _id(app, rg, "virtualNetworks", vnet), VNET, vnet, rg)
        return Response(200, paged(req, app.store.of_type(f"{VNET}/{kind}", vrec["body"]["id"]), app.config.page_size,
                                   lambda r: render(app, r)))


_vnet_child_routes("subnets", "subnet")


@route("DELETE", V + r"/subnets/(?P<subnet>[^/]+)")
def delete_subnet(app, req, sub, rg, vnet, subnet):
    rid = _id(app, rg, "virtualNetworks", vnet, "subnets", subnet)
    rec = app.store.get(rid)
    if rec and rec["x"].get("allocated"):
        raise _subnet_in_use(rec, vnet)
    return _accepted_delete(app, req, rid)


# -- peerings --------------------------------------------------------------------------------------
@route("PUT", V + r"/virtualNetworkPeerings/(?P<peer>[^/]+)")
def put_peering(app, req, sub, rg, vnet, peer):
    vrec = _get(app, _id(app, rg, "virtualNetworks", vnet), VNET, vnet, rg)
    check_name(peer)
    props = (req.body or {}).get("properties") or {}
    rid = vrec["body"]["id"] + "/virtualNetworkPeerings/" + peer
    remote_id = (props.get("remoteVirtualNetwork") or {}).get("id")
    remote = app.store.get(remote_id) if remote_id else None
    if remote is None:
        raise invalid_reference(app, remote_id, rid)
    mine = [ipaddress.ip_network(p) for p in vrec["body"]["properties"]["addressSpace"]["addressPrefixes"]]
    theirs = remote["body"]["properties"]["addressSpace"]["addressPrefixes"]
    for a in mine:
        for b in theirs:
            if a.overlaps(ipaddress.ip_network(b)):
                raise bad_request("VnetAddressSpacesOverlap",
                                  f"Cannot create or update peering {rid}. Virtual networks {vrec['body']['id']} and "
                                  f"{remote['body']['id']} cannot be peered because their address spaces overlap. "
                                  f"Overlapping address prefixes: {a}, {b}")
    with app.store.lock:
        old = app.store.get(rid)
        body = {"name": peer, "id": rid, "etag": etag(), "type": PEERING,
                "properties": {"provisioningState": "Updating",
                               "peeringState": old["body"]["properties"]["peeringState"] if old else "Initiated",
                               "peeringSyncLevel": "FullyInSync",
                               "remoteVirtualNetwork": {"id": remote["body"]["id"]},
                               "allowVirtualNetworkAccess": bool(props.get("allowVirtualNetworkAccess", True)),
                               "allowForwardedTraffic": bool(props.get("allowForwardedTraffic", False)),
                               "allowGatewayTransit": bool(props.get("allowGatewayTransit", False)),
                               "useRemoteGateways": bool(props.get("useRemoteGateways", False)),
                               "remoteAddressSpace": {"addressPrefixes": list(theirs)},
                               "remoteVirtualNetworkAddressSpace": {"addressPrefixes": list(theirs)},
                               "doNotVerifyRemoteGateways": False, "peerCompleteVnets": True,
                               "resourceGuid": old["body"]["properties"]["resourceGuid"] if old else new_guid()}}
        app.store.put(body)
    return _write_response(app, req, app.store.get(rid), old is None, hook="peered")


def _reverse(app, rec):
    local_vnet = rec["body"]["id"].rsplit("/virtualNetworkPeerings/", 1)[0]
    remote_vnet = rec["body"]["properties"]["remoteVirtualNetwork"]["id"]
    for p in app.store.of_type(PEERING, remote_vnet):
        if p["body"]["properties"]["remoteVirtualNetwork"]["id"].lower() == local_vnet.lower():
            return p, local_vnet, remote_vnet
    return None, local_vnet, remote_vnet


def _sync_peering_state(app, rid):
    rec = app.store.get(rid)
    back, local_vnet, remote_vnet = _reverse(app, rec)
    if back is None:
        return
    was_connected = rec["body"]["properties"]["peeringState"] == "Connected"
    with app.store.lock:
        rec["body"]["properties"]["peeringState"] = "Connected"
        back["body"]["properties"]["peeringState"] = "Connected"
        app.store.touch()
    if not was_connected:
        app.backend.networks_peered(local_vnet, remote_vnet)


def _delete_peering_now(app, rid):
    rec = app.store.get(rid)
    if rec is None:
        return
    back, local_vnet, remote_vnet = _reverse(app, rec)
    connected = rec["body"]["properties"]["peeringState"] == "Connected"
    app.store.delete(rid)
    if back is not None:
        with app.store.lock:
            back["body"]["properties"]["peeringState"] = "Disconnected"
            app.store.touch()
    if connected:
        app.backend.networks_unpeered(local_vnet, remote_vnet)


_vnet_child_routes("virtualNetworkPeerings", "peer")


@route("DELETE", V + r"/virtualNetworkPeerings/(?P<peer>[^/]+)")
def delete_peering(app, req, sub, rg, vnet, peer):
    return _accepted_delete(app, req, _id(app, rg, "virtualNetworks", vnet, "virtualNetworkPeerings", peer))


# -- network security groups -----------------------------------------------------------------------
def _rule(nsg_id: str, rule: dict, kind: str = "securityRules") -> dict:
    name = rule.get("name")
    if not name:
        raise bad_request("InvalidRequestFormat", "Cannot parse the request. Security rule name is missing.")
    p = dict(rule.get("properties") or {})
    prio = p.get("priority")
    if kind == "securityRules" and (not isinstance(prio, int) or not 100 <= prio <= 4096):
        raise bad_request("SecurityRuleInvalidPriority",
                          f"Security rule has invalid Priority. Value provided: {prio} Allowed range 100-4096.")
    for key in ("protocol", "access", "direction"):
        if not p.get(key):
            raise bad_request("SecurityRuleParameterContainsUnsupportedValue" if key == "protocol" else
                              "InvalidRequestFormat",
                              f"Security rule parameter {key.capitalize()} is missing or invalid.")
    p["provisioningState"] = "Succeeded"
    return {"name": name, "id": f"{nsg_id}/{kind}/{name}", "etag": etag(), "type":
            f"Microsoft.Network/networkSecurityGroups/{kind}", "properties": p}


def _defaults(nsg_id: str) -> list:
    out = []
    for name, desc, access, src, dst, direction, prio in DEFAULT_RULES:
        out.append(_rule(nsg_id, {"name": name, "properties": {
            "description": desc, "protocol": "*", "sourcePortRange": "*", "destinationPortRange": "*",
            "sourceAddressPrefix": src, "destinationAddressPrefix": dst, "access": access, "priority": prio,
            "direction": direction, "sourcePortRanges": [], "destinationPortRanges": [],
            "sourceAddressPrefixes": [], "destinationAddressPrefixes": []}}, "defaultSecurityRules"))
    return out


def _check_rule_conflicts(rules: list) -> None:
    seen = {}
    for r in rules:
        key = (r["properties"]["direction"].lower(), r["properties"]["priority"])
        if key in seen:
            raise bad_request("SecurityRuleConflict",
                              f"Security rule {r['name']} conflicts with rule {seen[key]}. Rules cannot have the same "
                              "Priority and Direction.")
        seen[key] = r["name"]


@route("PUT", N)
def put_nsg(app, req, sub, rg, nsg):
    require_rg(app, rg)
    check_name(nsg)
    body = req.body or {}
    rid = _id(app, rg, "networkSecurityGroups", nsg)
    location = normalize_location(body.get("location"), NSG)
    props = body.get("properties") or {}
    rules = [_rule(rid, r) for r in props.get("securityRules") or []]
    _check_rule_conflicts(rules)
    with app.store.lock:
        old, new = _top_level_put(app, rid, NSG, nsg, rg, location, body,
                                  {"securityRules": rules, "defaultSecurityRules": _defaults(rid)})
        app.store.put(new)
    return _write_response(app, req, app.store.get(rid), old is None)


@route("GET", N)
def get_nsg(app, req, sub, rg, nsg):
    return Response(200, render(app, _get(app, _id(app, rg, "networkSecurityGroups", nsg), NSG, nsg, rg)))


@route("DELETE", N)
def delete_nsg(app, req, sub, rg, nsg):
    rid = _id(app, rg, "networkSecurityGroups", nsg)
    rec = app.store.get(rid)
    subnets = render(app, rec)["properties"].get("subnets") if rec else None
    if subnets:
        raise bad_request("InUseNetworkSecurityGroupCannotBeDeleted",
                          f"Network security group {rec['body']['id']} cannot be deleted because it is in use by the "
                          f"following resources: {subnets[0]['id']}. In order to "
                          "delete the Network security group, remove the association with the resource(s).")
    return _accepted_delete(app, req, rid)


list_routes(NSG, render)


@route("PUT", N + r"/securityRules/(?P<rule>[^/]+)")
def put_rule(app, req, sub, rg, nsg, rule):
    rec = _get(app, _id(app, rg, "networkSecurityGroups", nsg), NSG, nsg, rg)
    new_rule = _rule(rec["body"]["id"], {"name": rule, "properties": (req.body or {}).get("properties") or {}})
    with app.store.lock:
        rules = [r for r in rec["body"]["properties"]["securityRules"] if r["name"].lower() != rule.lower()]
        created = len(rules) == len(rec["body"]["properties"]["securityRules"])
        _check_rule_conflicts(rules + [new_rule])
        rec["body"]["properties"]["securityRules"] = rules + [new_rule]
        rec["body"]["etag"] = etag()
        app.store.touch()
    op = app.lro.start(req, NS, rec["body"]["location"], "net_provision", {"rid": rec["body"]["id"]}, new_rule["id"])
    view = deep(new_rule)
    view["properties"]["provisioningState"] = "Updating"
    return Response(201 if created else 200, view, app.lro.headers(op, location=False))


@route("GET", N + r"/securityRules/(?P<rule>[^/]+)")
def get_rule(app, req, sub, rg, nsg, rule):
    rec = _get(app, _id(app, rg, "networkSecurityGroups", nsg), NSG, nsg, rg)
    for r in rec["body"]["properties"]["securityRules"]:
        if r["name"].lower() == rule.lower():
            return Response(200, deep(r))
    raise not_found(NSG + "/" + nsg + "/securityRules", rule, rg)


@route("GET", N + r"/securityRules")
def list_rules(app, req, sub, rg, nsg):
    rec = _get(app, _id(app, rg, "networkSecurityGroups", nsg), NSG, nsg, rg)
    return Response(200, {"value": deep(rec["body"]["properties"]["securityRules"])})


@route("DELETE", N + r"/securityRules/(?P<rule>[^/]+)")
def delete_rule(app, req, sub, rg, nsg, rule):
    rec = app.store.get(_id(app, rg, "networkSecurityGroups", nsg))
    if rec is None or not any(r["name"].lower() == rule.lower() for r in rec["body"]["properties"]["securityRules"]):
        return Response(204)
    with app.store.lock:
        rec["body"]["properties"]["securityRules"] = [r for r in rec["body"]["properties"]["securityRules"]
                                                     if r["name"].lower() != rule.lower()]
        app.store.touch()
    op = app.lro.start(req, NS, rec["body"]["location"], "net_provision", {"rid": rec["body"]["id"]}, rec["body"]["id"])
    return app.lro.accepted(op)


# -- IP allocation ---------------------------------------------------------------------------------
def allocate_ip(app, subnet_id: str, owner: str) -> tuple[str, str]:
    """Lowest free address of the subnet (Azure reserves the first four and the last). Returns (ip, prefix)."""
    with app.store.lock:
        rec = app.store.get(subnet_id)
        net = ipaddress.ip_network(rec["body"]["properties"]["addressPrefix"])
        used = rec["x"].setdefault("allocated", {})
        for host in range(4, net.num_addresses - 1):
            ip = str(net.network_address + host)
            if ip not in used:
                used[ip] = owner
                app.store.touch()
                return ip, str(net)
        raise bad_request("SubnetIsFull", f"Subnet {rec['body']['name']} with address prefix {net} does not have "
                                          "enough capacity for 1 IP addresses.")


def check_free_ips(app, subnet_id: str, needed: int) -> None:
    """Fail before creating anything when the subnet cannot hold ``needed`` more addresses."""
    rec = app.store.get(subnet_id)
    net = ipaddress.ip_network(rec["body"]["properties"]["addressPrefix"])
    free = net.num_addresses - 5 - len(rec["x"].get("allocated", {}))
    if needed > free:
        raise bad_request("SubnetIsFull", f"Subnet {rec['body']['name']} with address prefix {net} does not have "
                                          f"enough capacity for {needed} IP addresses.")


def release_ip(app, subnet_id: str, ip: str) -> None:
    with app.store.lock:
        rec = app.store.get(subnet_id)
        if rec:
            rec["x"].get("allocated", {}).pop(ip, None)
            app.store.touch()


def nic_body(app, nic_id: str, nic_type: str, ipconfig: str, ip: str, subnet_id: str, vm_id: str,
             nsg_id: str | None, location: str | None, mac: str, primary_cfg: dict, ipc_model: dict) -> dict:
    ipc_props = {"provisioningState": "Succeeded", "privateIPAddress": ip, "privateIPAllocationMethod": "Dynamic"}
    pip = ipc_model.get("publicIPAddressConfiguration")
    if pip:
        ipc_props["publicIPAddress"] = {"id": f"{nic_id}/ipConfigurations/{ipconfig}/publicIPAddresses/{pip['name']}"}
    ipc_props.update({"subnet": {"id": subnet_id}, "primary": True, "privateIPAddressVersion": "IPv4"})
    for key in ("loadBalancerBackendAddressPools", "applicationGatewayBackendAddressPools",
                "applicationSecurityGroups"):
        if ipc_model.get(key):
            ipc_props[key] = deep(ipc_model[key])
    if ipc_model.get("loadBalancerInboundNatPools"):
        seq = vm_id.rsplit("/", 1)[1]
        ipc_props["loadBalancerInboundNatRules"] = [{"id": f"{p['id'].replace('/inboundNatPools/', '/inboundNatRules/')}"
                                                          f".{seq}"} for p in ipc_model["loadBalancerInboundNatPools"]]
    props = {"provisioningState": "Succeeded", "resourceGuid": new_guid(),
             "ipConfigurations": [{"name": ipconfig, "id": f"{nic_id}/ipConfigurations/{ipconfig}",
                                   "etag": etag(), "type": "Microsoft.Network/networkInterfaces/ipConfigurations",
                                   "properties": ipc_props}],
             "dnsSettings": {"dnsServers": [], "appliedDnsServers": [],
                             "internalDomainNameSuffix": "sandbox.internal.cloudapp.net"},
             "macAddress": mac, "enableAcceleratedNetworking": bool(primary_cfg.get("enableAcceleratedNetworking")),
             "enableIPForwarding": bool(primary_cfg.get("enableIPForwarding")), "primary": True,
             "virtualMachine": {"id": vm_id}, "nicType": "Standard", "vnetEncryptionSupported": False,
             "auxiliaryMode": "None", "auxiliarySku": "None", "disableTcpStateTracking": False,
             "hostedWorkloads": [], "tapConfigurations": []}
    if nsg_id:
        props["networkSecurityGroup"] = {"id": nsg_id}
    body = {"name": nic_id.rsplit("/", 1)[1], "id": nic_id, "etag": etag(), "type": nic_type, "properties": props}
    if location:
        body["location"] = location
        body["kind"] = "Regular"
    return body


# -- network interfaces ------------------------------------------------------------------------
@route("GET", type_path(RG, NIC, "nic"))
def get_nic(app, req, sub, rg, nic):
    return Response(200, deep(_get(app, _id(app, rg, "networkInterfaces", nic), NIC, nic, rg)["body"]))


list_routes(NIC, lambda app, rec: deep(rec["body"]))


@route("DELETE", type_path(RG, NIC, "nic"))
def delete_nic(app, req, sub, rg, nic):
    rid = _id(app, rg, "networkInterfaces", nic)
    rec = app.store.get(rid)
    if rec is None:
        return Response(204)
    vm = rec["body"]["properties"].get("virtualMachine", {}).get("id")
    if vm and app.store.get(vm):
        raise bad_request("NicInUse", f"Network Interface {rid} is used by existing resource {vm}. In order to "
                                      "delete the network interface, it must be dissociated from the resource.")
    ipc = rec["body"]["properties"]["ipConfigurations"][0]["properties"]
    release_ip(app, ipc["subnet"]["id"], ipc["privateIPAddress"])
    app.store.delete(rid)
    return Response(200)


@registry.on_purge(50)
def purge_under(app, prefix: str) -> None:
    """Delete every network resource under an id prefix (resource group delete)."""
    for rec in app.store.of_type(NIC, prefix):
        ipc = rec["body"]["properties"]["ipConfigurations"][0]["properties"]
        release_ip(app, ipc["subnet"]["id"], ipc["privateIPAddress"])
        app.store.delete(rec["body"]["id"])
    for rec in app.store.of_type(VNET, prefix):
        delete_vnet_now(app, rec["body"]["id"])
    for rec in app.store.of_type(NSG, prefix):
        app.store.delete(rec["body"]["id"])


# -- public IP addresses -------------------------------------------------------------------------------
# The emulator creates no public IPs (scale sets here have no publicIPAddressConfiguration), so these
# lists are truthfully empty; they exist so clients that ask (the inventory's use_public_ip) get ARM's
# answer rather than a 404 for an unknown route.
@route("GET", RG + r"/providers/Microsoft\.Network/publicIPAddresses")
def list_public_ips(app, req, sub, rg):
    require_rg(app, rg)
    return Response(200, {"value": []})


@route("GET", SUB + r"/providers/Microsoft\.Network/publicIPAddresses")
def list_all_public_ips(app, req, sub):
    return Response(200, {"value": []})

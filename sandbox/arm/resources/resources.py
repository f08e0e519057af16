"""Microsoft.Resources — ARM's own endpoints: subscriptions and tenants (sign-in discovery), resource
groups (delete cascades to every provider through the registry), generic resource lists, provider
registrations; cloud metadata, the token service routes and the operation status endpoints."""
from __future__ import annotations

import re

from .. import registry
from ..auth import in_scope
from ..errors import ArmError, rg_not_found
from ..lro import job
from ..router import RG, SUB, Response, paged, route, type_path
from ..util import LOCATIONS, check_rg_name, deep, normalize_location

RG_TYPE = "Microsoft.Resources/resourceGroups"

# ARM's own api-versions (one list for all of its endpoints, as ARM answers InvalidApiVersionParameter
# with one list): the stable folders of azure-rest-api-specs
#   specification/resources/resource-manager/Microsoft.Resources/resources/readme.md (resources.json
#   tags, commit 01fd66f3) and .../Microsoft.Resources/subscriptions/readme.md (subscriptions.json tags,
#   commit 1311a1c7). ``POST /batch`` is answered by ARM itself under the same versions (clients send
#   2015-11-01, 2020-06-01, 2022-12-01).
ARM_VERSIONS = (
    "2015-11-01", "2016-02-01", "2016-06-01", "2016-07-01", "2016-09-01", "2017-05-10", "2018-02-01", "2018-05-01",
    "2018-06-01", "2019-03-01", "2019-05-01", "2019-05-10", "2019-06-01", "2019-07-01", "2019-08-01", "2019-10-01",
    "2019-11-01", "2020-01-01", "2020-06-01", "2020-08-01", "2020-10-01", "2021-01-01", "2021-04-01", "2022-09-01",
    "2022-12-01", "2023-07-01", "2024-03-01", "2024-07-01", "2024-11-01", "2025-03-01", "2025-04-01")
PROVIDER = registry.provider("Microsoft.Resources", "azure-rest-api-specs Microsoft.Resources resources.json + "
                                                    "subscriptions.json stable versions")
for _t in ("subscriptions", "tenants", "resourceGroups", "resourceGroups/resources", "resources", "locations",
           "providers", "operationresults", "batch"):
    PROVIDER.resource_type(_t, ARM_VERSIONS)


def rg_id(app, rg: str) -> str:
    return f"/subscriptions/{app.sub}/resourceGroups/{rg}"


def require_rg(app, rg: str) -> dict:
    rec = app.store.get(rg_id(app, rg))
    if rec is None or rec["body"]["properties"]["provisioningState"] == "Deleting":
        raise rg_not_found(rg)
    return rec


def list_routes(rtype: str, render) -> None:
    """Register the two list operations of a resource type: GET .../resourceGroups/{rg}/providers/<type>
    and GET /subscriptions/{sub}/providers/<type>. Paged, ordered by id; render(app, rec) makes the
    answer of each record of the page."""
    def page(app, req, recs):
        return Response(200, paged(req, recs, app.config.page_size, lambda r: render(app, r)))

    @route("GET", type_path(RG, rtype))
    def list_in_resource_group(app, req, sub, rg):
        require_rg(app, rg)
        return page(app, req, app.store.of_type(rtype, rg_id(app, rg)))

    @route("GET", type_path(SUB, rtype))
    def list_in_subscription(app, req, sub):
        return page(app, req, app.store.of_type(rtype))


# -- cloud metadata and token service -------------------------------------------------------------
@route("GET", r"/metadata/endpoints", auth=False)
def metadata_endpoints(app, req):
    rm = app.base + "/"
    cloud = {
        "galleryEndpoint": rm, "graphEndpoint": rm, "graph": rm, "portalEndpoint": rm, "portal": rm,
        "name": "AzureSandbox", "resourceManager": rm, "microsoftGraphResourceId": rm, "sqlManagement": rm,
        "authentication": {"loginEndpoint": app.base + "/", "audiences": [rm, rm.rstrip("/")],
                           "tenant": "common", "identityProvider": "AAD"},
        "media": rm, "batch": rm, "appInsightsResourceId": rm, "appInsightsTelemetryChannelResourceId": rm,
        "synapseAnalyticsResourceId": rm, "logAnalyticsResourceId": rm, "ossrDbmsResourceId": rm,
        "suffixes": {"acrLoginServer": "azurecr.sandbox", "sqlServerHostname": "database.sandbox",
                     "keyVaultDns": "vault.sandbox", "storage": "core.sandbox", "storageSyncEndpointSuffix": "sandbox"},
    }
    # api-version 2015-01-01 (Azure Stack, msrestazure) answers one object; newer versions a list of clouds.
    version = req.api_version or "2015-01-01"
    return Response(200, [cloud] if version >= "2019-05-01" else cloud)


@route("GET", r"/(?P<tenant>[^/]+)/v2\.0/\.well-known/openid-configuration", auth=False)
def openid_v2(app, req, tenant):
    return Response(200, app.auth.openid_configuration(tenant, v2=True))


@route("GET", r"/(?P<tenant>[^/]+)/\.well-known/openid-configuration", auth=False)
def openid_v1(app, req, tenant):
    return Response(200, app.auth.openid_configuration(tenant, v2=False))


@route("GET", r"/(?P<tenant>[^/]+)/discovery(?:/v2\.0)?/keys", auth=False)
def jwks(app, req, tenant):
    return Response(200, {"keys": []})


@route("POST", r"/(?P<tenant>[^/]+)/oauth2/v2\.0/token", auth=False)
def token_v2(app, req, tenant):
    return Response(200, app.auth.token_request(tenant, req.raw_body, req.headers, v2=True))


@route("POST", r"/(?P<tenant>[^/]+)/oauth2/token", auth=False)
def token_v1(app, req, tenant):
    return Response(200, app.auth.token_request(tenant, req.raw_body, req.headers, v2=False))


# -- operations ------------------------------------------------------------------------------------
@route("GET", SUB + r"/providers/(?P<ns>[^/]+)/locations/(?P<loc>[^/]+)/(?:operations|operationResults)/(?P<op>[^/]+)")
def operation_status(app, req, sub, ns, loc, op):
    return app.lro.status_response(op, monitor=(req.q("monitor") or "").lower() == "true")


@route("GET", SUB + r"/operationresults/(?P<op>[^/]+)")
def operation_result(app, req, sub, op):
    return app.lro.status_response(op, monitor=True)


# -- subscriptions ---------------------------------------------------------------------------------
def _subscription(app):
    return {"id": f"/subscriptions/{app.sub}", "subscriptionId": app.sub, "tenantId": app.identity["tenant_id"],
            "displayName": "Sandbox subscription", "state": "Enabled",
            "subscriptionPolicies": {"locationPlacementId": "Public_2014-09-01", "quotaId": "PayAsYouGo_2014-09-01",
                                     "spendingLimit": "Off"}, "authorizationSource": "RoleBased",
            "managedByTenants": []}


def _has_any_assignment(app, principal: str, scope: str) -> bool:
    """A role assignment of ``principal`` at ``scope``, above it or anywhere below it."""
    for rec in app.store.of_type("Microsoft.Authorization/roleAssignments"):
        p = rec["body"]["properties"]
        if p["principalId"] == principal and (in_scope(p["scope"], scope) or in_scope(scope, p["scope"])):
            return True
    return False


@route("GET", r"/subscriptions", auth="tenant")
def list_subscriptions(app, req):
    """Subscriptions_List is a tenant-level read: ARM lists every subscription in which the caller holds
    any role assignment (at the subscription, a resource group or a resource), no RBAC check of its own."""
    mine = _has_any_assignment(app, req.principal["oid"], f"/subscriptions/{app.sub}")
    return Response(200, {"value": [_subscription(app)] if mine else []})


@route("GET", r"/tenants", auth="tenant")
def list_tenants(app, req):
    """Tenants_List: the tenants the caller's token is for (the sandbox has one directory)."""
    tid = app.identity["tenant_id"]
    return Response(200, {"value": [{"id": f"/tenants/{tid}", "tenantId": tid, "countryCode": "US",
                                     "displayName": "Sandbox directory", "domains": ["sandbox.onmicrosoft.com"],
                                     "defaultDomain": "sandbox.onmicrosoft.com", "tenantCategory": "Home",
                                     "tenantType": "AAD"}]})


def _visible_subscription(app, req) -> None:
    """Reading the subscription itself (and its locations) needs no role on it: any role assignment
    inside it makes it visible, as the tenant-level list shows it."""
    if not _has_any_assignment(app, req.principal["oid"], f"/subscriptions/{app.sub}"):
        raise ArmError(404, "SubscriptionNotFound", f"The subscription '{app.sub}' could not be found.")


@route("GET", SUB, auth="tenant")
def get_subscription(app, req, sub):
    _visible_subscription(app, req)
    return Response(200, _subscription(app))


@route("GET", SUB + r"/locations", auth="tenant")
def list_locations(app, req, sub):
    _visible_subscription(app, req)
    return Response(200, {"value": [{"id": f"/subscriptions/{app.sub}/locations/{k}", "name": k, "displayName": v,
                                     "regionalDisplayName": v, "metadata": {"regionType": "Physical"}}
                                    for k, v in LOCATIONS.items()]})


# -- resource groups -------------------------------------------------------------------------------
@route("PUT", RG)
def put_group(app, req, sub, rg):
    check_rg_name(rg)
    body = req.body or {}
    location = normalize_location(body.get("location"), RG_TYPE)
    with app.store.lock:
        rec = app.store.get(rg_id(app, rg))
        if rec and rec["body"]["properties"]["provisioningState"] == "Deleting":
            raise ArmError(409, "ResourceGroupBeingDeleted",
                           f"The resource group '{rg}' is in deprovisioning state and cannot perform this operation.")
        if rec and rec["body"]["location"] != location:
            raise ArmError(409, "InvalidResourceGroupLocation",
                           f"Invalid resource group location '{location}'. The Resource group already exists in "
                           f"location '{rec['body']['location']}'.")
        name = rec["body"]["name"] if rec else rg
        new = {"id": rg_id(app, name), "name": name, "type": RG_TYPE, "location": location,
               "properties": {"provisioningState": "Succeeded"}}
        if body.get("tags") is not None:
            new["tags"] = body["tags"]
        if body.get("managedBy"):
            new["managedBy"] = body["managedBy"]
        app.store.put(new)
    return Response(200 if rec else 201, deep(new))


@route("GET", RG)
def get_group(app, req, sub, rg):
    return Response(200, deep(require_rg(app, rg)["body"]))


@route("HEAD", RG)
def head_group(app, req, sub, rg):
    rec = app.store.get(rg_id(app, rg))
    return Response(204 if rec else 404)


@route("PATCH", RG)
def patch_group(app, req, sub, rg):
    rec = require_rg(app, rg)
    with app.store.lock:
        body = deep(rec["body"])
        if "tags" in (req.body or {}):
            body["tags"] = req.body["tags"] or {}
        app.store.put(body)
    return Response(200, deep(body))


@route("GET", SUB + r"/resourceGroups")
def list_groups(app, req, sub):
    items = [deep(r["body"]) for r in app.store.of_type(RG_TYPE)]
    return Response(200, paged(req, items, app.config.page_size))


def _generic_list(app, req, prefix: str) -> Response:
    """Resources.List: top-level resources under a prefix, with ARM's $filter forms
    (resourceType eq, location eq, tagName eq [and tagValue eq], substringof(..., name))."""
    flt = req.q("$filter") or ""
    conds = dict((k.lower(), v) for k, v in re.findall(r"(resourceType|location|tagName|tagValue|name)\s+eq\s+'([^']*)'",
                                                        flt, re.I))
    sub_m = re.search(r"substringof\('([^']*)',\s*name\)", flt, re.I)
    items = []
    for rec in app.store.under(prefix):
        b = rec["body"]
        parts = b["id"].split("/")
        if len(parts) != 9 or parts[5].lower() != "providers" or "location" not in b:
            continue  # only top-level tracked resources (not child resources or instances)
        tags = b.get("tags") or {}
        if "resourcetype" in conds and b["type"].lower() != conds["resourcetype"].lower():
            continue
        if "location" in conds and b["location"] != conds["location"].replace(" ", "").lower():
            continue
        if "name" in conds and b["name"].lower() != conds["name"].lower():
            continue
        if "tagname" in conds:
            match = {k.lower(): v for k, v in tags.items()}
            if conds["tagname"].lower() not in match:
                continue
            if "tagvalue" in conds and match[conds["tagname"].lower()] != conds["tagvalue"]:
                continue
        if sub_m and sub_m.group(1).lower() not in b["name"].lower():
            continue
        items.append({k: deep(b[k]) for k in ("id", "name", "type", "location", "tags", "sku", "identity", "zones",
                                              "kind", "plan") if k in b})
    items.sort(key=lambda b: b["id"].lower())
    return Response(200, paged(req, items, app.config.page_size))


@route("GET", RG + r"/resources")
def list_group_resources(app, req, sub, rg):
    require_rg(app, rg)
    return _generic_list(app, req, rg_id(app, rg))


@route("GET", SUB + r"/resources")
def list_subscription_resources(app, req, sub):
    return _generic_list(app, req, f"/subscriptions/{app.sub}/resourceGroups")


def _provider(app, prov):
    """A provider registration as GET /providers/{namespace} answers it: its resource types with the
    api-versions the emulator enforces (newest first, as ARM lists them)."""
    return {"id": f"/subscriptions/{app.sub}/providers/{prov.namespace}", "namespace": prov.namespace,
            "registrationState": "Registered", "registrationPolicy": "RegistrationRequired",
            "resourceTypes": [{"resourceType": name, "locations": list(LOCATIONS.values()),
                               "apiVersions": sorted(versions, reverse=True), "capabilities": "None"}
                              for name, versions, _ in prov.types.values()]}


@route("GET", SUB + r"/providers")
def list_providers(app, req, sub):
    return Response(200, {"value": [_provider(app, p) for p in registry.PROVIDERS.values()]})


@route("GET", SUB + r"/providers/(?P<ns>[^/]+)")
def get_provider(app, req, sub, ns):
    prov = registry.get_provider(ns)
    if prov is None:
        raise ArmError(404, "InvalidResourceNamespace", f"The resource namespace '{ns}' is invalid.")
    return Response(200, _provider(app, prov))


@route("POST", SUB + r"/providers/(?P<ns>[^/]+)/register")
def register_provider(app, req, sub, ns):
    return get_provider(app, req, sub, ns)


@route("DELETE", RG)
def delete_group(app, req, sub, rg):
    rec = app.store.get(rg_id(app, rg))
    if rec is None:
        raise rg_not_found(rg)
    with app.store.lock:
        rec["body"]["properties"]["provisioningState"] = "Deleting"
        app.store.touch()
    op = app.lro.start(req, "Microsoft.Resources", "", "rg_delete", {"rid": rec["body"]["id"]}, rec["body"]["id"])
    return app.lro.accepted(op)


@job("rg_delete")
def rg_delete_job(app, op, rid):
    delete_group_now(app, rid)


def delete_group_now(app, rid: str) -> None:
    """Cascade: every provider's purge hook in order (instances through the backend before the networks
    they sit in, role assignments last), then whatever is left under the group, then the group."""
    registry.purge_under(app, rid)
    for rec in app.store.under(rid):
        app.store.delete(rec["body"]["id"])
    app.store.delete(rid)

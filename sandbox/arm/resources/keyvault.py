"""Microsoft.KeyVault: vaults (management plane, soft delete, recover, purge, name availability) and the
secrets data plane at ``https://<vault>.vault.azure.net/secrets/...`` (served on the same port, picked by the
Host header; see ``data_plane``).

Sources: azure-rest-api-specs specification/keyvault/resource-manager/Microsoft.KeyVault/stable/*/keyvault.json
(vaults, deletedVaults, checkNameAvailability) and specification/keyvault/data-plane/Microsoft.KeyVault/stable/
7.x/secrets.json (SetSecret, GetSecret, GetSecrets, GetSecretVersions, DeleteSecret, deleted secrets); error
texts from the Key Vault docs (rest-error-codes, soft-delete-overview, rbac-guide). Not emulated: access keys,
certificates, managed HSM, network ACLs / private endpoints (echoed), the secrets of the management plane
(``vaults/{v}/secrets`` PUT); an api-version the specs do not define answers as ARM does.
"""
from __future__ import annotations

import logging
import re
import time
import uuid

from .. import registry
from ..auth import KEY_VAULT_AUDIENCE, data_action_allowed
from ..errors import ArmError, bad_request, not_found
from ..router import RG, SUB, Response, route, type_path
from ..util import deep, normalize_location, now_iso
from .resources import list_routes, require_rg, rg_id

LOG = logging.getLogger("sandbox.arm.keyvault")
VAULT = "Microsoft.KeyVault/vaults"
DELETED = "Microsoft.KeyVault/deletedVaults"
# stable folders of specification/keyvault/resource-manager/Microsoft.KeyVault/stable (2015-06-01 ... 2024-11-01)
# and the default of azure-mgmt-keyvault 14.1 (2026-05-15)
VERSIONS = ("2015-06-01", "2016-10-01", "2018-02-14", "2019-09-01", "2021-10-01", "2022-07-01", "2023-02-01",
            "2023-07-01", "2024-11-01", "2026-05-15")
PROVIDER = registry.provider("Microsoft.KeyVault", "azure-rest-api-specs keyvault resource-manager stable folders + "
                                                   "azure-mgmt-keyvault 14.1 default")
for _t in ("vaults", "deletedVaults", "locations/deletedVaults", "checkNameAvailability", "locations/operationResults",
           "vaults/accessPolicies"):
    PROVIDER.resource_type(_t, VERSIONS)
# data plane api-versions: specification/keyvault/data-plane/Microsoft.KeyVault/stable/7.0 ... 7.6 and the newer
# date versions azure-keyvault-secrets 4.12 knows (2025-07-01, its default 2026-04-01)
DATA_VERSIONS = ("7.0", "7.1", "7.2", "7.3", "7.4", "7.5", "7.6", "2025-07-01", "2026-04-01")
VAULT_HOST = re.compile(r"^(?P<vault>[A-Za-z0-9-]{3,24})\.vault\.azure\.net(?::443)?$", re.I)
NAME_OK = re.compile(r"^[A-Za-z](?!.*--)[A-Za-z0-9-]{1,22}[A-Za-z0-9]$")
SECRET_NAME = re.compile(r"^[0-9A-Za-z-]{1,127}$")


def _vault_name_error(name: str) -> ArmError:
    return bad_request("VaultNameNotValid", f"The vault name '{name}' is invalid. A vault's name must be between 3-24 "
                                            "alphanumeric characters. The name must begin with a letter, end with a "
                                            "letter or digit, and not contain consecutive hyphens. Follow this link for "
                                            "more information: https://go.microsoft.com/fwlink/?linkid=2147742")


def _find_vault(app, name: str) -> dict | None:
    for rec in app.store.of_type(VAULT):
        if rec["body"]["name"].lower() == name.lower():
            return rec
    return None


def _find_deleted(app, name: str) -> dict | None:
    for rec in app.store.of_type(DELETED):
        if rec["body"]["name"].lower() == name.lower():
            return rec
    return None


def _deleted_id(app, location: str, name: str) -> str:
    return f"/subscriptions/{app.sub}/providers/Microsoft.KeyVault/locations/{location}/deletedVaults/{name}"


def _vault_props(props: dict, old: dict | None, name: str) -> dict:
    """The stored properties of a PUT: defaults for what is not sent (ARM's PUT replaces, but a vault keeps
    what it had for the optional booleans, as Key Vault does)."""
    base = deep(old["properties"]) if old else {
        "accessPolicies": [], "enabledForDeployment": False, "enabledForDiskEncryption": False,
        "enabledForTemplateDeployment": False, "enableSoftDelete": True, "softDeleteRetentionInDays": 90,
        "enableRbacAuthorization": False, "publicNetworkAccess": "Enabled"}
    for key, value in props.items():
        if key in ("vaultUri", "provisioningState", "hsmPoolResourceId", "createMode", "privateEndpointConnections"):
            continue
        base[key] = value
    base["vaultUri"] = f"https://{name.lower()}.vault.azure.net/"
    base["provisioningState"] = "Succeeded"
    return base


def _validate_vault(name: str, body: dict, old: dict | None) -> None:
    props = body.get("properties")
    if not isinstance(props, dict):
        raise bad_request("BadRequest", "The request is missing the required 'properties' object.")
    if not body.get("location"):
        raise bad_request("LocationRequired", "The location property is required for this definition.")
    if not props.get("tenantId"):
        raise bad_request("BadRequest", "The parameter properties.tenantId is required.")
    sku = props.get("sku") or {}
    if str(sku.get("family", "")).upper() != "A" or str(sku.get("name", "")).lower() not in ("standard", "premium"):
        raise bad_request("BadRequest", "The parameter properties.sku must be {\"family\": \"A\", \"name\": "
                                        "\"standard\" | \"premium\"}.")
    days = props.get("softDeleteRetentionInDays")
    if days is not None and not (isinstance(days, int) and 7 <= days <= 90):
        raise bad_request("BadRequest", "The property \"softDeleteRetentionInDays\" has an invalid value. It must be "
                                        "between 7 and 90 days.")
    if old is None:
        return
    op = old["properties"]
    if op.get("enableSoftDelete", True) and props.get("enableSoftDelete") is False:
        raise bad_request("BadRequest", "The property \"enableSoftDelete\" has been set to true previously and cannot "
                                        "be set to false.")
    if op.get("enablePurgeProtection") and props.get("enablePurgeProtection") is False:
        raise bad_request("BadRequest", "The property \"enablePurgeProtection\" cannot be set to false. Enabling the "
                                        "purge protection for a vault is an irreversible action.")
    if days is not None and days != op.get("softDeleteRetentionInDays"):
        raise bad_request("BadRequest", "The property \"softDeleteRetentionInDays\" cannot be changed once the vault "
                                        "has been created.")


def _write_vault(app, req, rg, name, rid, body, props, old, deleted) -> dict:
    """A create or update (not a recover) of the vault at ``rid``; the caller holds the store lock."""
    if deleted is not None:
        raise ArmError(409, "ConflictError",
                       "A vault with the same name already exists in deleted state. You need to either recover or "
                       "purge existing key vault. Follow this link https://go.microsoft.com/fwlink/?linkid=2149745 "
                       "for more information on soft delete.")
    _validate_vault(name, body, old["body"] if old else None)
    location = normalize_location(body["location"], VAULT)
    if old and old["body"]["location"] != location:
        raise bad_request("InvalidResourceLocation",
                          f"The resource '{name}' already exists in location '{old['body']['location']}' in "
                          f"resource group '{rg}'. A resource with the same name cannot be created in location "
                          f"'{location}'. Please select a new resource name.")
    now = now_iso()
    who = (req.principal or {}).get("oid", "")
    system = deep(old["body"]["systemData"]) if old else {"createdBy": who, "createdByType": "Application",
                                                         "createdAt": now}
    system.update(lastModifiedBy=who, lastModifiedByType="Application", lastModifiedAt=now)
    vault = {"id": rid, "name": name, "type": VAULT, "location": location,
             "tags": body.get("tags") if body.get("tags") is not None else (old["body"].get("tags", {})
                                                                             if old else {}),
             "systemData": system, "properties": _vault_props(props, old["body"] if old else None, name)}
    rec = app.store.put(vault)
    return rec


@route("PUT", type_path(RG, VAULT, "name"))
def put_vault(app, req, sub, rg, name):
    require_rg(app, rg)
    if not NAME_OK.match(name):
        raise _vault_name_error(name)
    body = req.body if isinstance(req.body, dict) else {}
    rid = f"{rg_id(app, rg)}/providers/{VAULT}/{name}"
    with app.store.lock:
        old = app.store.get(rid)
        other = _find_vault(app, name)
        if other and other["body"]["id"].lower() != rid.lower():
            raise ArmError(409, "VaultAlreadyExists",
                           f"The vault name '{name}' is already in use. Vault names are globally unique so it is "
                           "possible that the name is already taken. If you are sure that the vault name was not taken "
                           "then it is possible that a vault with the same name was recently deleted but not purged "
                           "after being placed in a recoverable state. If the vault is in a recoverable state then the "
                           "vault will need to be purged before reusing the name. For more information on "
                           "VaultAlreadyExists, soft delete and purging a vault follow this link "
                           "https://go.microsoft.com/fwlink/?linkid=2147740.")
        props = body.get("properties") if isinstance(body.get("properties"), dict) else {}
        mode = str(props.get("createMode") or "default").lower()
        deleted = _find_deleted(app, name) if old is None else None
        if mode == "recover":
            if deleted is None:
                raise ArmError(404, "ResourceNotFound", f"The deleted vault '{name}' could not be found: there is "
                                                        "nothing to recover (createMode=recover).")
            vault = deep(deleted["x"]["vault"])
            if vault["id"].lower() != rid.lower():
                raise bad_request("BadRequest", f"The deleted vault '{name}' was in resource group "
                                                f"'{vault['id'].split('/')[4]}'; recover it there.")
            app.store.delete(deleted["body"]["id"])
            rec = app.store.put(vault, {"secrets": deleted["x"].get("secrets", {})})
        else:
            rec = _write_vault(app, req, rg, name, rid, body, props, old, deleted)
    if mode == "recover" or not old:
        announce(app)  # outside the store lock: the backend may take a while
    return Response(200 if old or mode == "recover" else 201, deep(rec["body"]))


@route("GET", type_path(RG, VAULT, "name"))
def get_vault(app, req, sub, rg, name):
    require_rg(app, rg)
    rec = app.store.get(f"{rg_id(app, rg)}/providers/{VAULT}/{name}")
    if rec is None:
        raise not_found(VAULT, name, rg)
    return Response(200, deep(rec["body"]))


@route("PATCH", type_path(RG, VAULT, "name"))
def patch_vault(app, req, sub, rg, name):
    require_rg(app, rg)
    rid = f"{rg_id(app, rg)}/providers/{VAULT}/{name}"
    with app.store.lock:
        rec = app.store.get(rid)
        if rec is None:
            raise not_found(VAULT, name, rg)
        body = req.body if isinstance(req.body, dict) else {}
        merged = deep(rec["body"])
        merged["properties"].update(body.get("properties") or {})
        if body.get("tags") is not None:
            merged["tags"] = body["tags"]
        _validate_vault(name, {"location": merged["location"], "properties": dict(
            body.get("properties") or {}, tenantId=merged["properties"]["tenantId"], sku=merged["properties"]["sku"])},
            rec["body"])
        merged["properties"] = _vault_props(merged["properties"], None, name)
        rec = app.store.put(merged)
    return Response(200, deep(rec["body"]))


@route("DELETE", type_path(RG, VAULT, "name"))
def delete_vault(app, req, sub, rg, name):
    require_rg(app, rg)
    with app.store.lock:
        rec = app.store.get(f"{rg_id(app, rg)}/providers/{VAULT}/{name}")
        if rec is None:
            return Response(204)
        _soft_delete(app, rec)
    announce(app)
    return Response(200)


def announce(app) -> None:
    """Tell the backend which vault host names exist (sandbox hosts resolve them to the emulator)."""
    try:
        app.backend.vault_hosts(sorted(f"{r['body']['name'].lower()}.vault.azure.net" for r in app.store.of_type(VAULT)))
    except Exception:  # noqa: BLE001 - a backend failure must not fail the ARM request
        LOG.exception("backend vault_hosts failed")


def _soft_delete(app, rec: dict) -> None:
    """A vault with soft delete on goes to deletedVaults (its secrets with it) for its retention days."""
    vault = rec["body"]
    app.store.delete(vault["id"])
    props = vault["properties"]
    if not props.get("enableSoftDelete", True):
        return
    now = time.time()
    days = props.get("softDeleteRetentionInDays") or 90
    body = {"id": _deleted_id(app, vault["location"], vault["name"]), "name": vault["name"], "type": DELETED,
            "properties": {"vaultId": vault["id"], "location": vault["location"], "deletionDate": now_iso(),
                           "scheduledPurgeDate": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + days * 86400)),
                           "tags": vault.get("tags") or {},
                           "purgeProtectionEnabled": bool(props.get("enablePurgeProtection"))}}
    app.store.put(body, {"vault": deep(vault), "secrets": rec["x"].get("secrets", {})})


list_routes(VAULT, lambda app, rec: deep(rec["body"]))


@route("GET", SUB + r"/providers/Microsoft\.KeyVault/deletedVaults")
def list_deleted(app, req, sub):
    return Response(200, {"value": [deep(r["body"]) for r in app.store.of_type(DELETED)]})


@route("GET", SUB + r"/providers/Microsoft\.KeyVault/locations/(?P<loc>[^/]+)/deletedVaults/(?P<name>[^/]+)")
def get_deleted(app, req, sub, loc, name):
    rec = app.store.get(_deleted_id(app, loc.lower(), name))
    if rec is None:
        raise ArmError(404, "ResourceNotFound", f"The Resource 'Microsoft.KeyVault/deletedVaults/{name}' under "
                                                f"location '{loc}' was not found.")
    return Response(200, deep(rec["body"]))


@route("POST", SUB + r"/providers/Microsoft\.KeyVault/locations/(?P<loc>[^/]+)/deletedVaults/(?P<name>[^/]+)/purge")
def purge_deleted(app, req, sub, loc, name):
    with app.store.lock:
        rec = app.store.get(_deleted_id(app, loc.lower(), name))
        if rec is None:
            raise ArmError(404, "ResourceNotFound", f"The Resource 'Microsoft.KeyVault/deletedVaults/{name}' under "
                                                    f"location '{loc}' was not found.")
        if rec["body"]["properties"]["purgeProtectionEnabled"]:
            raise ArmError(409, "ConflictError", f"Operation 'DeletedVaultPurge' is not allowed as purge protection is "
                                                 f"enabled for key vault '{name}'.")
        app.store.delete(rec["body"]["id"])
    op = app.lro.start(req, "Microsoft.KeyVault", loc.lower(), "keyvault_done", {},
                       path=f"/subscriptions/{app.sub}/providers/Microsoft.KeyVault/locations/{loc.lower()}/"
                            "operationResults", settle=1)
    return Response(202, None, {"Location": app.lro.url(op), "Retry-After": app.lro.retry_after()})


@route("GET", SUB + r"/providers/Microsoft\.KeyVault/locations/(?P<loc>[^/]+)/operationResults/(?P<op>[^/]+)")
def operation_result(app, req, sub, loc, op):
    return app.lro.status_response(op, monitor=True)


from ..lro import job  # noqa: E402  (kept next to its only use)


@job("keyvault_done")
def _done(app, op):
    return None


@route("POST", SUB + r"/providers/Microsoft\.KeyVault/checkNameAvailability")
def check_name(app, req, sub):
    body = req.body if isinstance(req.body, dict) else {}
    name = str(body.get("name") or "")
    if str(body.get("type") or "").lower() != VAULT.lower():
        raise bad_request("InvalidResourceType", f"The resource type '{body.get('type')}' is not valid; use "
                                                 f"'{VAULT}'.")
    if not NAME_OK.match(name):
        return Response(200, {"nameAvailable": False, "reason": "AccountNameInvalid",
                              "message": _vault_name_error(name).message})
    if _find_vault(app, name) or _find_deleted(app, name):
        return Response(200, {"nameAvailable": False, "reason": "AlreadyExists",
                              "message": f"The vault name '{name}' is already in use."})
    return Response(200, {"nameAvailable": True})


@registry.on_purge(80)  # a resource group delete deletes its vaults (soft delete applies, as in Azure)
def purge_vaults(app, prefix: str) -> None:
    recs = app.store.of_type(VAULT, prefix)
    for rec in recs:
        _soft_delete(app, rec)
    if recs:
        announce(app)


# -- data plane --------------------------------------------------------------------------------------------
class DataError(ArmError):
    """A Key Vault data-plane error: ``{"error": {"code", "message"[, "innererror"]}}``."""

    def __init__(self, status: int, code: str, message: str, inner: str | None = None, headers: dict | None = None):
        body = {"error": {"code": code, "message": message}}
        if inner:
            body["error"]["innererror"] = {"code": inner}
        super().__init__(status, code, message, headers=headers, body=body)


def vault_from_host(host: str) -> str | None:
    m = VAULT_HOST.match(host or "")
    return m.group("vault").lower() if m else None


def _challenge(app) -> dict:
    return {"WWW-Authenticate": f'Bearer authorization="{app.auth.authority}/{app.identity["tenant_id"]}", '
                                f'resource="{KEY_VAULT_AUDIENCE}"'}


def _caller(app, req) -> dict:
    header = req.headers.get("authorization")
    if not header or not header.lower().startswith(("bearer ", "pop ")):
        raise DataError(401, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token.",
                        headers=_challenge(app))
    try:
        claims = app.auth.decode(header.split(" ", 1)[1].strip())
    except ValueError:
        raise DataError(401, "Unauthorized", "AKV10032: Invalid issuer or signature.", headers=_challenge(app)) from None
    if claims.get("exp", 0) < time.time():
        raise DataError(401, "Unauthorized", "AKV10013: Token has expired.", headers=_challenge(app))
    aud = str(claims.get("aud", ""))
    if aud.rstrip("/") != KEY_VAULT_AUDIENCE:
        raise DataError(401, "Unauthorized", f"AKV10022: Invalid audience. Expected {KEY_VAULT_AUDIENCE}, found: "
                                             f"{aud}.", headers=_challenge(app))
    return claims


# secret operation -> (RBAC data action, access policy permission)
ACTIONS = {
    "get": ("Microsoft.KeyVault/vaults/secrets/getSecret/action", "get"),
    "set": ("Microsoft.KeyVault/vaults/secrets/setSecret/action", "set"),
    "list": ("Microsoft.KeyVault/vaults/secrets/readMetadata/action", "list"),
    "update": ("Microsoft.KeyVault/vaults/secrets/update/action", "set"),
    "delete": ("Microsoft.KeyVault/vaults/secrets/delete", "delete"),
    "recover": ("Microsoft.KeyVault/vaults/secrets/recover/action", "recover"),
    "purge": ("Microsoft.KeyVault/vaults/secrets/purge/action", "purge"),
}


def _authorize(app, claims: dict, vault: dict, op: str, secret: str | None) -> None:
    action, permission = ACTIONS[op]
    props = vault["properties"]
    caller = f"appid={claims.get('appid', '')};oid={claims.get('oid', '')};iss={claims.get('iss', '')}"
    where = f"{vault['name']};location={vault['location']}"
    if props.get("enableRbacAuthorization"):
        scope = vault["id"] + (f"/secrets/{secret}" if secret else "")
        assignments = [r["body"] for r in app.store.of_type("Microsoft.Authorization/roleAssignments")]
        if data_action_allowed(assignments, claims.get("oid", ""), action, scope):
            return
        raise DataError(403, "Forbidden",
                        "Caller is not authorized to perform action on resource.\r\nIf role assignments, deny "
                        "assignments or role definitions were changed recently, please observe propagation time.\r\n"
                        f"Caller: {caller}\r\nAction: '{action}'\r\nResource: '{scope.lower()}'\r\n"
                        "Assignment: (not found)\r\nDenyAssignmentId: null\r\nDecisionReason: null \r\n"
                        f"Vault: {where}\r\n", inner="ForbiddenByRbac")
    for policy in props.get("accessPolicies") or []:
        if policy.get("objectId") == claims.get("oid") and permission in [
                p.lower() for p in (policy.get("permissions") or {}).get("secrets") or []] + (
                ["get", "list", "set", "delete", "recover", "purge"] if "all" in [
                    p.lower() for p in (policy.get("permissions") or {}).get("secrets") or []] else []):
            return
    raise DataError(403, "Forbidden", f"The user, group or application '{caller}' does not have secrets {permission} "
                                      f"permission on key vault '{where}'. For help resolving this issue, please see "
                                      "https://go.microsoft.com/fwlink/?linkid=2125287", inner="AccessDenied")


def _recovery_level(vault: dict) -> str:
    props = vault["properties"]
    if not props.get("enableSoftDelete", True):
        return "Purgeable"
    custom = "CustomizedRecoverable" if (props.get("softDeleteRetentionInDays") or 90) < 90 else "Recoverable"
    return custom if props.get("enablePurgeProtection") else custom + "+Purgeable"


def _not_found(name: str) -> DataError:
    return DataError(404, "SecretNotFound", f"A secret with (name/id) {name} was not found in this key vault. If you "
                                            "recently deleted this secret you may be able to recover it using the "
                                            "correct recovery command. For help resolving this issue, please see "
                                            "https://go.microsoft.com/fwlink/?linkid=2125182")


def _bundle(base: str, vault: dict, name: str, version: str, item: dict, value: bool = True) -> dict:
    out = {"id": f"{base}secrets/{name}/{version}",
           "attributes": dict(item["attributes"], recoveryLevel=_recovery_level(vault),
                              recoverableDays=vault["properties"].get("softDeleteRetentionInDays") or 90)}
    if not vault["properties"].get("enableSoftDelete", True):
        out["attributes"].pop("recoverableDays")
    if value:
        out["value"] = item["value"]
    if item.get("contentType") is not None:
        out["contentType"] = item["contentType"]
    if item.get("tags"):
        out["tags"] = item["tags"]
    return out


def _item(base: str, vault: dict, name: str, item: dict) -> dict:
    out = _bundle(base, vault, name, "", item, value=False)
    out["id"] = f"{base}secrets/{name}"
    return out


def data_plane(app, req, vault_name: str) -> Response:
    """One request to https://<vault_name>.vault.azure.net: token (audience https://vault.azure.net), api-version,
    RBAC data actions (or access policies), then the secrets operation."""
    base = f"https://{vault_name}.vault.azure.net/"
    rec = _find_vault(app, vault_name)
    if rec is None:  # Azure: the name does not resolve (or a deleted vault's name answers 404 here too)
        raise DataError(404, "VaultNotFound", f"The vault '{vault_name}' does not exist (no such host "
                                              f"{vault_name}.vault.azure.net).")
    if req.api_version not in DATA_VERSIONS:
        if not req.api_version:
            raise DataError(400, "BadParameter", "The request URI must contain an 'api-version' query parameter.")
        raise DataError(400, "BadParameter", f"The specified version ({req.api_version}) is not recognized. Consider "
                                             f"using the latest supported version ({DATA_VERSIONS[-1]}).")
    claims = _caller(app, req)
    vault = rec["body"]
    parts = [p for p in req.path.split("/") if p]
    if not parts or parts[0].lower() not in ("secrets", "deletedsecrets"):
        raise DataError(404, "NotFound", f"The requested path {req.path} is not served by this emulator (only "
                                         "secrets and deleted secrets).")
    deleted_view = parts[0].lower() == "deletedsecrets"
    name = parts[1] if len(parts) > 1 else None
    if name is not None and not SECRET_NAME.match(name):
        raise DataError(400, "BadParameter", "The request URI contains an invalid name: " + name)
    with app.store.lock:
        rec = _find_vault(app, vault_name)
        secrets = rec["x"].setdefault("secrets", {})
        entry = secrets.get(name.lower()) if name else None
        if deleted_view:
            return _deleted_secret_op(app, req, claims, vault, base, secrets, parts, name, entry)
        if name is None:
            if req.method != "GET":
                raise DataError(405, "BadParameter", f"The method {req.method} is not allowed on /secrets.")
            _authorize(app, claims, vault, "list", None)
            items = [_item(base, vault, e["name"], e["versions"][e["current"]]) for _, e in sorted(secrets.items())
                     if not e.get("deleted")]
            return Response(200, {"value": items, "nextLink": None})
        rest = parts[2:]
        if req.method == "PUT" and not rest:
            _authorize(app, claims, vault, "set", name)
            if entry and entry.get("deleted"):
                raise DataError(409, "Conflict", f"Secret {name} is currently in a deleted but recoverable state, and "
                                                 "its name cannot be reused; in this state, the secret can only be "
                                                 "recovered or purged.", inner="ObjectIsDeletedButRecoverable")
            body = req.body if isinstance(req.body, dict) else {}
            if not isinstance(body.get("value"), str):
                raise DataError(400, "BadParameter", "Property 'value' is required and must be a string.")
            now = int(time.time())
            attrs = body.get("attributes") or {}
            version = uuid.uuid4().hex
            item = {"value": body["value"], "contentType": body.get("contentType"), "tags": body.get("tags") or {},
                    "attributes": {"enabled": attrs.get("enabled", True), "created": now, "updated": now,
                                   **{k: attrs[k] for k in ("nbf", "exp") if attrs.get(k) is not None}}}
            entry = entry or {"name": name, "versions": {}}
            entry["versions"][version] = item
            entry["current"] = version
            secrets[name.lower()] = entry
            app.store.touch()
            return Response(200, _bundle(base, vault, entry["name"], version, item))
        if req.method == "GET" and (not rest or (len(rest) == 1 and rest[0].lower() != "versions")):
            _authorize(app, claims, vault, "get", name)
            if entry is None or entry.get("deleted"):
                raise _not_found(name)
            version = rest[0] if rest else entry["current"]
            item = entry["versions"].get(version.lower())
            if item is None:
                raise _not_found(f"{name}/{version}")
            return Response(200, _bundle(base, vault, entry["name"], version.lower(), item))
        if req.method == "PATCH" and len(rest) <= 1:  # UpdateSecret: attributes, contentType, tags of a version
            _authorize(app, claims, vault, "update", name)
            if entry is None or entry.get("deleted"):
                raise _not_found(name)
            version = (rest[0] if rest else entry["current"]).lower()
            item = entry["versions"].get(version)
            if item is None:
                raise _not_found(f"{name}/{version}")
            body = req.body if isinstance(req.body, dict) else {}
            if "contentType" in body:
                item["contentType"] = body["contentType"]
            if body.get("tags") is not None:
                item["tags"] = body["tags"]
            for key in ("enabled", "nbf", "exp"):
                if (body.get("attributes") or {}).get(key) is not None:
                    item["attributes"][key] = body["attributes"][key]
            item["attributes"]["updated"] = int(time.time())
            app.store.touch()
            return Response(200, _bundle(base, vault, entry["name"], version, item, value=False))
        if req.method == "GET" and rest and rest[0].lower() == "versions":
            _authorize(app, claims, vault, "list", name)
            if entry is None or entry.get("deleted"):
                raise _not_found(name)
            return Response(200, {"value": [dict(_bundle(base, vault, entry["name"], v, i, value=False))
                                            for v, i in entry["versions"].items()], "nextLink": None})
        if req.method == "DELETE" and not rest:
            _authorize(app, claims, vault, "delete", name)
            if entry is None or entry.get("deleted"):
                raise _not_found(name)
            out = _deleted_bundle(base, vault, entry)
            if vault["properties"].get("enableSoftDelete", True):
                entry["deleted"] = {"deletedDate": int(time.time())}
                out = _deleted_bundle(base, vault, entry)
            else:
                secrets.pop(name.lower())
            app.store.touch()
            return Response(200, out)
    raise DataError(405, "BadParameter", f"The method {req.method} is not allowed on {req.path} by this emulator.")


def _deleted_bundle(base: str, vault: dict, entry: dict) -> dict:
    out = _bundle(base, vault, entry["name"], entry["current"], entry["versions"][entry["current"]], value=False)
    deleted = entry.get("deleted")
    if deleted:
        days = vault["properties"].get("softDeleteRetentionInDays") or 90
        out.update(recoveryId=f"{base}deletedsecrets/{entry['name']}", deletedDate=deleted["deletedDate"],
                   scheduledPurgeDate=deleted["deletedDate"] + days * 86400)
    return out


def _deleted_secret_op(app, req, claims, vault, base, secrets, parts, name, entry) -> Response:
    if name is None:
        _authorize(app, claims, vault, "list", None)
        return Response(200, {"value": [_deleted_bundle(base, vault, e) for _, e in sorted(secrets.items())
                                        if e.get("deleted")], "nextLink": None})
    missing = DataError(404, "SecretNotFound", f"Deleted Secret not found: {name}")
    if req.method == "GET" and len(parts) == 2:
        _authorize(app, claims, vault, "list", name)
        if entry is None or not entry.get("deleted"):
            raise missing
        return Response(200, _deleted_bundle(base, vault, entry))
    if req.method == "POST" and len(parts) == 3 and parts[2].lower() == "recover":
        _authorize(app, claims, vault, "recover", name)
        if entry is None or not entry.get("deleted"):
            raise missing
        entry.pop("deleted")
        app.store.touch()
        return Response(200, _bundle(base, vault, entry["name"], entry["current"], entry["versions"][entry["current"]],
                                     value=False))
    if req.method == "DELETE" and len(parts) == 2:
        _authorize(app, claims, vault, "purge", name)
        if entry is None or not entry.get("deleted"):
            raise missing
        if vault["properties"].get("enablePurgeProtection"):
            raise DataError(403, "Forbidden", f"Operation \"purge\" is not allowed because purge protection is enabled "
                                              f"for this vault. Key Vault service will automatically purge it after the "
                                              f"retention period has passed.\r\nVault: {vault['name']}",
                            inner="PurgeProtectionEnabled")
        secrets.pop(name.lower())
        app.store.touch()
        return Response(204)
    raise DataError(405, "BadParameter", f"The method {req.method} is not allowed on {req.path} by this emulator.")

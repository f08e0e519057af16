"""Token service (OpenID discovery + OAuth2 client credentials) and ARM bearer-token checks + RBAC."""
from __future__ import annotations

import base64
import fnmatch
import hashlib
import hmac
import json
import os
import secrets
import time
import uuid
from urllib.parse import parse_qs

from .errors import ArmError
from .util import now_iso

TOKEN_LIFETIME = 3600

# Built-in role definitions (ids as in every Azure tenant).
ROLES = {
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635": {
        "roleName": "Owner", "description": "Grants full access to manage all resources, including the ability "
        "to assign roles in Azure RBAC.", "actions": ["*"], "notActions": []},
    "b24988ac-6180-42a0-ab88-20f7382dd24c": {
        "roleName": "Contributor", "description": "Grants full access to manage all resources, but does not allow "
        "you to assign roles in Azure RBAC, manage assignments in Azure Blueprints, or share image galleries.",
        "actions": ["*"], "notActions": ["Microsoft.Authorization/*/Delete", "Microsoft.Authorization/*/Write",
                                         "Microsoft.Authorization/elevateAccess/Action",
                                         "Microsoft.Blueprint/blueprintAssignments/write",
                                         "Microsoft.Blueprint/blueprintAssignments/delete",
                                         "Microsoft.Compute/galleries/share/action"]},
    "acdd72a7-3385-48ef-bd42-f606fba81ae7": {
        "roleName": "Reader", "description": "View all resources, but does not allow you to make any changes.",
        "actions": ["*/read"], "notActions": []},
    "9980e02c-c2be-4d73-94e8-173b1dc7cf3c": {
        "roleName": "Virtual Machine Contributor", "description": "Create and manage virtual machines, manage "
        "disks, install and run software, reset password of the root user of the virtual machine using VM "
        "extensions, and manage local user accounts using VM extensions.",
        "actions": ["Microsoft.Authorization/*/read", "Microsoft.Compute/*", "Microsoft.Network/*/read",
                    "Microsoft.Network/networkInterfaces/*", "Microsoft.Network/virtualNetworks/subnets/join/action",
                    "Microsoft.Resources/subscriptions/resourceGroups/read", "Microsoft.Resources/deployments/*"],
        "notActions": []},
}
OWNER = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
# Key Vault's built-in roles (Azure built-in roles list, Security section): control-plane reads plus data actions,
# which only a vault with enableRbacAuthorization checks (sandbox/arm/resources/keyvault.py).
_KV_READS = ["Microsoft.Authorization/*/read", "Microsoft.Insights/alertRules/*", "Microsoft.Resources/deployments/*",
             "Microsoft.Resources/subscriptions/resourceGroups/read", "Microsoft.Support/*",
             "Microsoft.KeyVault/checkNameAvailability/read", "Microsoft.KeyVault/deletedVaults/read",
             "Microsoft.KeyVault/locations/*/read", "Microsoft.KeyVault/vaults/*/read", "Microsoft.KeyVault/operations/read"]
ROLES.update({
    "00482a5a-887f-4fb3-b363-3b7fe8e74483": {
        "roleName": "Key Vault Administrator", "description": "Perform all data plane operations on a key vault and "
        "all objects in it, including certificates, keys, and secrets. Cannot manage key vault resources or manage "
        "role assignments. Only works for key vaults that use the 'Azure role-based access control' permission model.",
        "actions": _KV_READS, "notActions": [], "dataActions": ["Microsoft.KeyVault/vaults/*"]},
    "b86a8fe4-44ce-4948-aee5-eccb2c155cd7": {
        "roleName": "Key Vault Secrets Officer", "description": "Perform any action on the secrets of a key vault, "
        "except manage permissions. Only works for key vaults that use the 'Azure role-based access control' "
        "permission model.", "actions": _KV_READS, "notActions": [],
        "dataActions": ["Microsoft.KeyVault/vaults/secrets/*"]},
    "4633458b-17de-408a-b874-0445c86b69e6": {
        "roleName": "Key Vault Secrets User", "description": "Read secret contents. Only works for key vaults that use "
        "the 'Azure role-based access control' permission model.", "actions": [], "notActions": [],
        "dataActions": ["Microsoft.KeyVault/vaults/secrets/getSecret/action",
                        "Microsoft.KeyVault/vaults/secrets/readMetadata/action"]},
})
KEY_VAULT_AUDIENCE = "https://vault.azure.net"  # the data plane's token audience in the public cloud


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def aad_error(status: int, error: str, code: int, description: str) -> ArmError:
    """An Entra ID (AAD) token endpoint error body (not the ARM shape)."""
    trace, corr = str(uuid.uuid4()), str(uuid.uuid4())
    stamp = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime())
    return ArmError(status, error, description, body={
        "error": error,
        "error_description": f"AADSTS{code}: {description}\r\nTrace ID: {trace}\r\nCorrelation ID: {corr}"
                             f"\r\nTimestamp: {stamp}",
        "error_codes": [code], "timestamp": stamp, "trace_id": trace, "correlation_id": corr,
        "error_uri": f"https://login.microsoftonline.com/error?code={code}"})


class Auth:
    def __init__(self, identity: dict, key: bytes, authority: str, resource_manager: str):
        self.identity = identity  # tenant_id, subscription_id, client_id, client_secret, principal_id
        self.key = key
        self.authority = authority.rstrip("/")
        self.resource_manager = resource_manager

    @classmethod
    def load(cls, state_dir: str, authority: str, resource_manager: str) -> Auth:
        path = os.path.join(state_dir, "identity.json")
        if os.path.exists(path):
            with open(path, encoding="utf-8") as fh:
                ident = json.load(fh)
        else:
            ident = {"tenant_id": str(uuid.uuid4()), "subscription_id": str(uuid.uuid4()),
                     "client_id": str(uuid.uuid4()), "client_secret": secrets.token_urlsafe(30),
                     "principal_id": str(uuid.uuid4()), "token_key": secrets.token_hex(32)}
            with open(path, "w", encoding="utf-8") as fh:
                json.dump(ident, fh)
            os.chmod(path, 0o600)
        return cls(ident, bytes.fromhex(ident["token_key"]), authority, resource_manager)

    # -- tokens --------------------------------------------------------------------------------
    def issue(self, oid: str, appid: str, extra: dict | None = None, audience: str | None = None) -> tuple[str, int]:
        now = int(time.time())
        claims = {"aud": audience or self.resource_manager, "iss": f"{self.authority}/{self.identity['tenant_id']}/",
                  "iat": now, "nbf": now, "exp": now + TOKEN_LIFETIME, "appid": appid, "appidacr": "1",
                  "idtyp": "app", "oid": oid, "sub": oid, "tid": self.identity["tenant_id"], "ver": "1.0",
                  "uti": _b64(os.urandom(12))}
        claims.update(extra or {})
        head = _b64(json.dumps({"typ": "JWT", "alg": "HS256", "kid": "sandbox-arm"}).encode())
        payload = _b64(json.dumps(claims).encode())
        sig = _b64(hmac.new(self.key, f"{head}.{payload}".encode(), hashlib.sha256).digest())
        return f"{head}.{payload}.{sig}", claims["exp"]

    def decode(self, token: str) -> dict:
        """The claims of a token this service signed; ValueError when it did not sign it."""
        try:
            head, payload, sig = token.strip().split(".")
            good = _b64(hmac.new(self.key, f"{head}.{payload}".encode(), hashlib.sha256).digest())
            if not hmac.compare_digest(good, sig):
                raise ValueError("signature")
            return json.loads(_unb64(payload))
        except (ValueError, json.JSONDecodeError):
            raise ValueError("invalid token") from None

    def validate(self, header: str | None) -> dict:
        www = {"WWW-Authenticate": f'Bearer authorization_uri="{self.authority}/{self.identity["tenant_id"]}", '
                                   'error="invalid_token", error_description="The authentication failed because '
                                   'of missing \'Authorization\' header."'}
        if not header:
            raise ArmError(401, "AuthenticationFailed",
                           "Authentication failed. The 'Authorization' header is missing.", headers=www)
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise ArmError(401, "AuthenticationFailed",
                           "Authentication failed. The 'Authorization' header is provided in an invalid format.",
                           headers=www)
        try:
            claims = self.decode(token)
        except ValueError:
            raise ArmError(401, "InvalidAuthenticationToken", "The access token is invalid.", headers=www) from None
        now = time.time()
        if claims.get("exp", 0) < now:
            exp = time.strftime("%m/%d/%Y %H:%M:%S", time.gmtime(claims.get("exp", 0)))
            cur = time.strftime("%m/%d/%Y %H:%M:%S", time.gmtime(now))
            raise ArmError(401, "ExpiredAuthenticationToken",
                           f"The access token expiry UTC time '{exp}' is earlier than current UTC time '{cur}'.",
                           headers=www)
        if claims.get("aud", "").rstrip("/") != self.resource_manager.rstrip("/"):
            raise ArmError(401, "InvalidAuthenticationTokenAudience",
                           f"The access token has been obtained for wrong audience or resource '{claims.get('aud')}'. "
                           f"It should exactly match with one of the allowed audiences '{self.resource_manager}',"
                           f"'{self.resource_manager.rstrip('/')}'.", headers=www)
        return claims

    # -- token endpoint ------------------------------------------------------------------------
    def openid_configuration(self, tenant: str, v2: bool = True) -> dict:
        self._check_tenant(tenant)
        base = f"{self.authority}/{self.identity['tenant_id']}"
        suffix = "/v2.0" if v2 else ""
        return {
            "token_endpoint": f"{base}/oauth2{suffix}/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": f"{base}/discovery{suffix}/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{base}{suffix}",
            "request_uri_parameter_supported": False,
            "authorization_endpoint": f"{base}/oauth2{suffix}/authorize",
            "device_authorization_endpoint": f"{base}/oauth2{suffix}/devicecode",
            "http_logout_supported": True, "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/oauth2{suffix}/logout",
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "acr", "nonce", "tid", "ver"],
            "tenant_region_scope": "NA", "cloud_instance_name": "sandbox", "cloud_graph_host_name": "",
            "msgraph_host": "", "rbac_url": "",
        }

    def _check_tenant(self, tenant: str) -> None:
        if tenant.lower() not in (self.identity["tenant_id"], "organizations", "common"):
            raise aad_error(400, "invalid_request", 90002,
                            f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are "
                            "signing into the correct cloud. Check with your subscription administrator, this may "
                            "happen if there are no active subscriptions for the tenant.")

    def token_request(self, tenant: str, raw_body: bytes, headers: dict, v2: bool = True) -> dict:
        self._check_tenant(tenant)
        form = {k: v[0] for k, v in parse_qs(raw_body.decode("utf-8", "replace")).items()}
        basic = headers.get("authorization", "")
        if basic.lower().startswith("basic "):
            cid, _, sec = base64.b64decode(basic[6:]).decode().partition(":")
            form.setdefault("client_id", cid)
            form.setdefault("client_secret", sec)
        if form.get("grant_type") != "client_credentials":
            raise aad_error(400, "unsupported_grant_type", 70003,
                            "The app requested an unsupported grant type "
                            f"'{form.get('grant_type', '')}'.")
        client_id = form.get("client_id", "")
        if client_id != self.identity["client_id"]:
            raise aad_error(400, "unauthorized_client", 700016,
                            f"Application with identifier '{client_id}' was not found in the directory "
                            f"'{self.identity['tenant_id']}'. This can happen if the application has not been "
                            "installed by the administrator of the tenant or consented to by any user in the "
                            "tenant. You may have sent your authentication request to the wrong tenant.")
        if "client_secret" not in form:
            raise aad_error(401, "invalid_client", 7000218,
                            "The request body must contain the following parameter: 'client_assertion' or "
                            "'client_secret'.")
        if not hmac.compare_digest(form["client_secret"], self.identity["client_secret"]):
            raise aad_error(401, "invalid_client", 7000215,
                            "Invalid client secret provided. Ensure the secret being sent in the request is the "
                            "client secret value, not the client secret ID, for a secret added to app "
                            f"'{client_id}'.")
        resource = form.get("resource") if not v2 else None
        if v2:
            scopes = [s for s in form.get("scope", "").split() if s.endswith("/.default")]
            resource = scopes[0][: -len(".default")] if scopes else form.get("scope", "")
        audience = KEY_VAULT_AUDIENCE if resource.rstrip("/") == KEY_VAULT_AUDIENCE else self.resource_manager
        if resource.rstrip("/") not in (self.resource_manager.rstrip("/"), KEY_VAULT_AUDIENCE):
            raise aad_error(400, "invalid_resource", 500011,
                            f"The resource principal named {resource} was not found in the tenant named "
                            f"{self.identity['tenant_id']}. This can happen if the application has not been installed "
                            "by the administrator of the tenant or consented to by any user in the tenant. You might "
                            "have sent your authentication request to the wrong tenant.")
        token, exp = self.issue(self.identity["principal_id"], client_id, audience=audience)
        body = {"token_type": "Bearer", "expires_in": TOKEN_LIFETIME, "ext_expires_in": TOKEN_LIFETIME,
                "access_token": token}
        if not v2:
            body.update({"expires_on": str(exp), "not_before": str(exp - TOKEN_LIFETIME), "resource": audience})
        return body

    def managed_identity_token(self, principal_id: str, client_id: str, resource_id: str,
                               resource: str | None = None) -> dict:
        """A token for a system-assigned identity, in the IMDS /metadata/identity/oauth2/token shape; ``resource``:
        ARM (default) or Key Vault (https://vault.azure.net); anything else is ValueError."""
        audience = self.resource_manager
        if resource and resource.rstrip("/") not in (self.resource_manager.rstrip("/"), KEY_VAULT_AUDIENCE):
            raise ValueError(resource)
        if resource and resource.rstrip("/") == KEY_VAULT_AUDIENCE:
            audience = KEY_VAULT_AUDIENCE
        token, exp = self.issue(principal_id, client_id, {"xms_mirid": resource_id, "idtyp": "app"}, audience=audience)
        return {"access_token": token, "client_id": client_id, "expires_in": str(TOKEN_LIFETIME),
                "expires_on": str(exp), "ext_expires_in": str(TOKEN_LIFETIME), "not_before": str(exp - TOKEN_LIFETIME),
                "resource": audience, "token_type": "Bearer"}


# -- RBAC ------------------------------------------------------------------------------------------
def action_for(method: str, path: str) -> tuple[str, str]:
    """Map a request to (ARM action, scope) the way ARM authorizes it."""
    parts = [p for p in path.split("/") if p]
    low = [p.lower() for p in parts]
    verb = {"GET": "read", "HEAD": "read", "PUT": "write", "PATCH": "write", "DELETE": "delete"}.get(method, "action")
    if "providers" in low[2:]:
        i = len(low) - 1 - low[::-1].index("providers")
        ns, rest = parts[i + 1] if i + 1 < len(parts) else "", parts[i + 2:]
        types = rest[0::2]
        scope_parts = parts
        if len(rest) % 2 == 1:  # collection list or action
            scope_parts = parts[:-1]
            if method == "POST":
                return f"{ns}/{'/'.join(types[:-1])}/{types[-1]}/action", "/" + "/".join(scope_parts)
        if method == "POST":
            return f"{ns}/{'/'.join(types)}/action", "/" + "/".join(scope_parts)
        return f"{ns}/{'/'.join(types)}/{verb}", "/" + "/".join(scope_parts)
    if len(low) >= 3 and low[2] == "resourcegroups":
        scope = "/" + "/".join(parts[:4]) if len(parts) >= 4 else "/" + "/".join(parts[:2])
        tail = "/resources" if len(parts) > 4 else ""
        return f"Microsoft.Resources/subscriptions/resourceGroups{tail}/{verb}", scope
    return f"Microsoft.Resources/subscriptions/{verb}", "/" + "/".join(parts[:2])


def permissions_of(role: dict) -> list[dict]:
    """The permission blocks of a role: a built-in entry of ROLES is one block (its actions/notActions),
    a custom role definition's properties carry ``permissions`` (a list of blocks)."""
    return role["permissions"] if "permissions" in role else [role]


def _matches(action: str, patterns) -> bool:
    # ARM: case-insensitive, '*' matches any characters (slashes included), at most one per string
    return any(fnmatch.fnmatchcase(action, p.lower()) for p in patterns or ())


def _allowed(action: str, role: dict) -> bool:
    """A role grants an action when one of its blocks lists it in actions and not in that block's notActions."""
    a = action.lower()
    return any(_matches(a, block.get("actions")) and not _matches(a, block.get("notActions"))
               for block in permissions_of(role))


def in_scope(scope: str, target: str) -> bool:
    s, t = scope.lower().rstrip("/"), target.lower().rstrip("/")
    return s == "" or t == s or t.startswith(s + "/")


def authorize(assignments: list[dict], oid: str, method: str, path: str, custom_roles: dict | None = None,
              action: str | None = None) -> None:
    """403 AuthorizationFailed unless one of ``oid``'s assignments covering the request's scope grants its action.
    ``custom_roles``: lower-cased GUID -> properties of the custom role definitions (built-ins come from ROLES);
    ``action``: check this action on ``path`` (a scope) instead of the request's own."""
    scope = path
    if action is None:
        action, scope = action_for(method, path)
    for ra in assignments:
        props = ra["properties"]
        if props["principalId"] != oid or not in_scope(props["scope"], scope):
            continue
        guid = props["roleDefinitionId"].rsplit("/", 1)[-1].lower()
        role = ROLES.get(guid) or (custom_roles or {}).get(guid)
        if role and _allowed(action, role):
            return
    raise ArmError(403, "AuthorizationFailed",
                   f"The client '{oid}' with object id '{oid}' does not have authorization to perform action "
                   f"'{action}' over scope '{scope}' or the scope is invalid. If access was recently granted, "
                   "please refresh your credentials.")


def data_action_allowed(assignments: list[dict], oid: str, data_action: str, scope: str) -> bool:
    """Whether a role assignment of ``oid`` at or above ``scope`` grants ``data_action`` (dataActions)."""
    a = data_action.lower()
    for ra in assignments:
        props = ra["properties"]
        if props["principalId"] != oid or not in_scope(props["scope"], scope):
            continue
        role = ROLES.get(props["roleDefinitionId"].rsplit("/", 1)[-1].lower()) or {}
        if any(fnmatch.fnmatchcase(a, p.lower()) for p in role.get("dataActions", [])) and not any(
                fnmatch.fnmatchcase(a, p.lower()) for p in role.get("notDataActions", [])):
            return True
    return False


def role_definition_body(sub: str, guid: str, scope: str | None = None) -> dict:
    role = ROLES[guid]
    prefix = scope.rstrip("/") if scope else f"/subscriptions/{sub}"
    return {"id": f"{prefix}/providers/Microsoft.Authorization/roleDefinitions/{guid}",
            "type": "Microsoft.Authorization/roleDefinitions", "name": guid,
            "properties": {"roleName": role["roleName"], "type": "BuiltInRole", "description": role["description"],
                           "assignableScopes": ["/"],
                           "permissions": [{"actions": role["actions"], "notActions": role["notActions"],
                                            "dataActions": role.get("dataActions", []),
                                            "notDataActions": role.get("notDataActions", [])}],
                           "createdOn": "2015-02-02T21:55:09.8806423Z", "updatedOn": now_iso(),
                           "createdBy": None, "updatedBy": None}}

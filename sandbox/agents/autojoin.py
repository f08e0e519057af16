"""retry_join address resolution, including go-discover's Azure provider.

`provider=azure tag_name=X tag_value=Y subscription_id=S` lists the subscription's network
interfaces and keeps those tagged X=Y; `provider=azure resource_group=G vm_scale_set=V
subscription_id=S` lists the scale set's network interfaces.  Credentials: the instance's
managed identity token from IMDS (or tenant_id/client_id/secret_access_key).

Sandbox-only knobs (never used by the product): HASHISTACK_SANDBOX_IMDS_URL and
HASHISTACK_SANDBOX_ARM_URL override http://169.254.169.254 and https://management.azure.com;
trust for the ARM endpoint comes from SSL_CERT_FILE like any Go/Python TLS client.
"""

from __future__ import annotations

import json
import os
import shlex
import ssl
import urllib.parse
import urllib.request

IMDS = "http://169.254.169.254"
ARM = "https://management.azure.com"


class DiscoverError(Exception):
    pass


def parse_provider(s: str) -> dict:
    out = {}
    for part in shlex.split(s):
        if "=" not in part:
            raise DiscoverError(f"discover: invalid format: {part!r}")
        k, v = part.split("=", 1)
        out[k] = v
    return out


def _http_json(url: str, headers: dict, data: bytes | None = None, timeout: float = 10.0):
    req = urllib.request.Request(url, headers=headers, data=data)
    ctx = None
    if url.startswith("https://"):
        ctx = ssl.create_default_context(cafile=os.environ.get("SSL_CERT_FILE") or None)
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as r:  # noqa: S310 - fixed hosts
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        body = e.read().decode(errors="replace")[:300]
        raise DiscoverError(f"discover-azure: {req.get_method()} {url}: HTTP {e.code}: {body}") from e
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise DiscoverError(f"discover-azure: {url}: {e}") from e


def _token(args: dict) -> str:
    arm = os.environ.get("HASHISTACK_SANDBOX_ARM_URL", ARM).rstrip("/")
    resource = ARM + "/"
    if args.get("client_id") and args.get("secret_access_key") and args.get("tenant_id"):
        body = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": args["client_id"],
                                       "client_secret": args["secret_access_key"], "resource": resource}).encode()
        tok = _http_json(f"{arm}/{args['tenant_id']}/oauth2/token", {"Content-Type": "application/x-www-form-urlencoded"}, body)
        return tok["access_token"]
    imds = os.environ.get("HASHISTACK_SANDBOX_IMDS_URL", IMDS).rstrip("/")
    q = urllib.parse.urlencode({"api-version": "2018-02-01", "resource": resource})
    tok = _http_json(f"{imds}/metadata/identity/oauth2/token?{q}", {"Metadata": "true"})
    return tok["access_token"]


def _list(url: str, token: str) -> list[dict]:
    items = []
    while url:
        page = _http_json(url, {"Authorization": f"Bearer {token}"})
        items += page.get("value") or []
        url = page.get("nextLink")
    return items


def _private_ips(nics: list[dict]) -> list[str]:
    ips = []
    for nic in nics:
        for ipc in (nic.get("properties") or {}).get("ipConfigurations") or []:
            ip = (ipc.get("properties") or {}).get("privateIPAddress")
            if ip:
                ips.append(ip)
    return ips


def azure(args: dict) -> list[str]:
    sub = args.get("subscription_id")
    if not sub:
        raise DiscoverError("discover-azure: subscription_id is required")
    arm = os.environ.get("HASHISTACK_SANDBOX_ARM_URL", ARM).rstrip("/")
    token = _token(args)
    if args.get("tag_name"):
        url = f"{arm}/subscriptions/{sub}/providers/Microsoft.Network/networkInterfaces?api-version=2023-09-01"
        nics = [n for n in _list(url, token) if (n.get("tags") or {}).get(args["tag_name"]) == args.get("tag_value")]
        return _private_ips(nics)
    if args.get("resource_group") and args.get("vm_scale_set"):
        url = (f"{arm}/subscriptions/{sub}/resourceGroups/{args['resource_group']}/providers/Microsoft.Compute/"
               f"virtualMachineScaleSets/{args['vm_scale_set']}/networkInterfaces?api-version=2018-10-01")
        return _private_ips(_list(url, token))
    raise DiscoverError("discover-azure: tag_name and tag_value, or resource_group and vm_scale_set, are required")


def resolve(entry: str) -> list[str]:
    """Resolve one retry_join entry to addresses ("ip" or "ip:port")."""
    entry = entry.strip()
    if "provider=" in entry:
        args = parse_provider(entry)
        if args.get("provider") != "azure":
            raise DiscoverError(f"discover: unknown provider {args.get('provider')!r} (the sandbox supports azure)")
        return azure(args)
    return [entry]

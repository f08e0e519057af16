"""Helpers for the ARM emulator tests: the Azure SDK clients, a raw HTTPS client with a bearer token
and the structural comparator used by the conformance tests."""
from __future__ import annotations

import fnmatch
import time

import requests
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.network import NetworkManagementClient
from azure.mgmt.resource.resources import ResourceManagementClient


class Clients:
    """The azure-mgmt clients, default pipeline, pointed at an emulator (``credential``: another caller)."""

    def __init__(self, arm, credential=None):
        cred = credential or arm.credential()
        kw = arm.client_kwargs()
        self.sub = arm.subscription_id
        self.resource = ResourceManagementClient(cred, self.sub, **kw)
        self.network = NetworkManagementClient(cred, self.sub, **kw)
        self.compute = ComputeManagementClient(cred, self.sub, **kw)
        self.auth = AuthorizationManagementClient(cred, self.sub, **kw)


class Wire:
    """Raw ARM requests (no SDK), authenticated like the SDK: bearer token for resource_manager/.default."""

    def __init__(self, arm):
        self.arm = arm
        self.session = requests.Session()
        self.session.verify = arm.ca_path
        self._token = None

    def token(self) -> str:
        if self._token is None or self._token.expires_on - 60 < time.time():
            self._token = self.arm.credential().get_token(self.arm.resource_manager + ".default")
        return self._token.token

    def url(self, path: str) -> str:
        return path if path.startswith("https://") else self.arm.endpoint["authority"] + path

    def call(self, method: str, path: str, body=None, params=None, api_version="2024-07-01", auth=True):
        params = dict(params or {})
        if "api-version=" not in path:
            params.setdefault("api-version", api_version)
        headers = {"Authorization": f"Bearer {self.token()}"} if auth else {}
        return self.session.request(method, self.url(path), json=body, params=params, headers=headers, timeout=60,
                                    verify=self.arm.ca_path)

    def get(self, url: str):
        return self.session.get(url, headers={"Authorization": f"Bearer {self.token()}"}, timeout=60,
                                verify=self.arm.ca_path)

    def wait(self, resp, timeout: float = 60) -> dict:
        """Follow Azure-AsyncOperation of an LRO answer to its terminal status body."""
        url = resp.headers.get("Azure-AsyncOperation")
        deadline = time.time() + timeout
        while True:
            body = self.get(url).json()
            if body["status"] not in ("InProgress",):
                return body
            if time.time() > deadline:
                raise TimeoutError(url)
            time.sleep(0.05)


def compare(ref, ours, allowed: dict | None = None, path: str = "$", problems: list | None = None) -> list[str]:
    """Structural comparison: every key of the reference is present in ours with the same JSON type,
    recursively (lists element-wise). Values are not compared. ``None`` in a reference means "absent"
    (ARM omits nulls; examples that spell them out are showing optional fields). ``allowed`` maps
    fnmatch patterns of paths to the reason a difference is irrelevant."""
    problems = [] if problems is None else problems
    allowed = allowed or {}

    def ok(p):
        return any(fnmatch.fnmatchcase(p, pat) for pat in allowed)

    if ref is None:
        return problems
    if isinstance(ref, dict):
        if not isinstance(ours, dict):
            problems.append(f"{path}: expected object, got {type(ours).__name__}")
            return problems
        for key, value in ref.items():
            p = f"{path}.{key}"
            if value is None or ok(p):
                continue
            if key not in ours:
                problems.append(f"{p}: missing")
            else:
                compare(value, ours[key], allowed, p, problems)
    elif isinstance(ref, list):
        if not isinstance(ours, list):
            problems.append(f"{path}: expected array, got {type(ours).__name__}")
        elif ref and not ours:
            if not ok(path + "[]"):
                problems.append(f"{path}: empty array, reference has {len(ref)} item(s)")
        else:
            for i, item in enumerate(ref[:len(ours)]):
                compare(item, ours[i], allowed, f"{path}[]", problems)
    else:
        kinds = {bool: "boolean", int: "number", float: "number", str: "string"}
        if kinds.get(type(ref)) != kinds.get(type(ours)):
            problems.append(f"{path}: expected {kinds.get(type(ref))}, got {type(ours).__name__} ({ours!r})")
    return problems


def header_problems(ref_headers, resp) -> list[str]:
    out = []
    for name in ref_headers or ():
        if name.lower() not in {k.lower() for k in resp.headers}:
            out.append(f"header {name} missing")
    if "x-ms-request-id" not in {k.lower() for k in resp.headers}:
        out.append("header x-ms-request-id missing")
    if resp.content and not resp.headers.get("Content-Type", "").startswith("application/json"):
        out.append(f"content-type {resp.headers.get('Content-Type')}")
    return out

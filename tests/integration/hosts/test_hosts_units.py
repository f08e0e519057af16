"""sandbox/hosts pieces that need neither root nor booted hosts: nftables policy, names, IMDS."""

from __future__ import annotations

import http.client
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sandbox.hosts import arm_backend, imds_server, net


def _state(peerings=()):
    return {"tag": "abcd", "hosts": {}, "peerings": [list(p) for p in peerings],
            "networks": {"a": {"bridge": "hbabcdn1", "gateways": [["10.1.1.1", 24]]},
                         "b": {"bridge": "hbabcdn2", "gateways": [["10.2.1.1", 24], ["10.2.2.1", 24]]}},
            "imds": {"port": 4242}, "arm": {"port": 8443}, "exposed": {"8080": 18080}}


def test_ruleset_isolates_unpeered_networks():
    rs = net.ruleset(_state())
    assert 'iifname "hbabcdn1" oifname "hbabcdn1" accept' in rs
    assert 'iifname "hbabcdn1" oifname "hbabcdn2" accept' not in rs
    assert rs.index('iifname "hbabcdn*" drop') > rs.index('oifname "hbabcdn2" accept')
    assert "ip daddr 169.254.169.254 tcp dport 80 dnat ip to 127.0.0.1:4242" in rs
    assert 'iifname "hbabcdn2" ip daddr { 10.2.1.1, 10.2.2.1 } accept' in rs   # own gateways only
    for gw in ("10.1.1.1", "10.2.1.1", "10.2.2.1"):
        assert f"ip daddr {gw} tcp dport 443 dnat ip to 127.0.0.1:8443" in rs
        assert f"ip daddr {gw} tcp dport 8080 dnat ip to 127.0.0.1:18080" in rs


def test_ruleset_peering_is_both_ways():
    rs = net.ruleset(_state(peerings=[("a", "b")]))
    assert 'iifname "hbabcdn1" oifname "hbabcdn2" accept' in rs
    assert 'iifname "hbabcdn2" oifname "hbabcdn1" accept' in rs


def test_names_fit_kernel_limits():
    assert len(net.bridge_name("abcd", 9999)) <= 15 and len(net.veth_name("abcd", 9999)) <= 15
    vnet = "/subscriptions/s/resourceGroups/RG-One/providers/Microsoft.Network/virtualNetworks/VNet1"
    assert arm_backend.network_name(vnet) == "rg-one.vnet1"
    inst = {"id": "/subscriptions/s/resourceGroups/RG-One/providers/Microsoft.Compute/virtualMachineScaleSets/"
                  "web/virtualMachines/3", "resource_group": "RG-One", "vmss_name": "web", "instance_id": "3"}
    assert arm_backend.host_name(inst) == "rg-one.web_3"
    long = dict(inst, vmss_name="x" * 80)
    assert len(arm_backend.host_name(long)) <= 63
    assert net.gateway_for("10.0.1.0/24") == "10.0.1.1"
    mac = net.bridge_mac("hbabcdn1")
    assert mac == net.bridge_mac("hbabcdn1") and mac.startswith("02:") and len(mac) == 17


class _FakeArm(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if body["principal_id"] != "pid-1":
            self.send_response(404)
            self.end_headers()
            return
        data = json.dumps({"access_token": "tok", "expires_on": "2000000000", "expires_in": "3600",
                           "client_id": "cid-1"}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def imds(tmp_path):
    arm = ThreadingHTTPServer(("127.0.0.1", 0), _FakeArm)
    threading.Thread(target=arm.serve_forever, daemon=True).start()
    doc = {"compute": {"name": "vm0", "vmScaleSetName": "web", "tagsList": [{"name": "a", "value": "b"}]},
           "network": {"interface": [{"ipv4": {"ipAddress": [{"privateIpAddress": "127.0.0.1"}]}}]}}
    st = {"hosts": {"h": {"ip": "127.0.0.1", "imds": doc, "principal_id": "pid-1"},
                    "n": {"ip": "127.0.0.3", "imds": doc, "principal_id": None}},
          "arm": {"url": f"http://127.0.0.1:{arm.server_address[1]}", "ca": None}}
    (tmp_path / "state.json").write_text(json.dumps(st))
    srv = ThreadingHTTPServer(("127.0.0.1", 0), imds_server.Handler)
    srv.state = imds_server._State(tmp_path)
    threading.Thread(target=srv.serve_forever, daemon=True).start()

    def get(path, headers=None, source="127.0.0.1"):
        c = http.client.HTTPConnection("127.0.0.1", srv.server_address[1], source_address=(source, 0), timeout=10)
        c.request("GET", path, headers=headers if headers is not None else {"Metadata": "true"})
        r = c.getresponse()
        body = r.read().decode()
        c.close()
        return r.status, body

    yield get
    srv.shutdown()
    arm.shutdown()


def test_imds_instance_document_and_text(imds):
    code, body = imds("/metadata/instance?api-version=2021-02-01")
    assert code == 200 and json.loads(body)["compute"]["vmScaleSetName"] == "web"
    assert imds("/metadata/instance/compute/vmScaleSetName?api-version=2021-02-01&format=text") == (200, "web")
    assert imds("/metadata/instance/network/interface/0/ipv4/ipAddress/0/privateIpAddress"
                "?api-version=2021-02-01&format=text") == (200, "127.0.0.1")
    assert imds("/metadata/instance/compute?api-version=2021-02-01&format=text")[1].split() == \
        ["name", "vmScaleSetName", "tagsList/"]
    assert imds("/metadata/instance/compute/nope?api-version=2021-02-01")[0] == 404


def test_imds_rejects_like_the_real_one(imds):
    assert imds("/metadata/instance?api-version=2021-02-01", headers={}) == \
        (400, json.dumps({"error": "Bad request. Required metadata header not specified"}))
    assert imds("/metadata/instance?api-version=2021-02-01", headers={"Metadata": "yes"})[0] == 400
    assert imds("/metadata/instance?api-version=2021-02-01",
                headers={"Metadata": "true", "X-Forwarded-For": "1.2.3.4"})[0] == 400
    code, body = imds("/metadata/instance")
    assert code == 400 and json.loads(body)["newest-versions"] == ["2023-07-01", "2021-12-13", "2021-11-15"]
    code, body = imds("/metadata/versions")
    assert code == 200 and "2021-02-01" in json.loads(body)["apiVersions"]
    assert imds("/metadata/instance?api-version=2021-02-01", source="127.0.0.2")[0] == 404  # unknown caller


def test_imds_managed_identity_token(imds):
    code, body = imds("/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com/")
    assert code == 200
    tok = json.loads(body)
    assert tok["access_token"] == "tok" and tok["client_id"] == "cid-1" and tok["token_type"] == "Bearer"
    assert tok["resource"] == "https://management.azure.com/" and tok["expires_on"] == "2000000000"
    assert all(isinstance(tok[k], str) for k in ("expires_in", "ext_expires_in", "not_before"))
    code, body = imds("/metadata/identity/oauth2/token?api-version=2018-02-01&resource=x", source="127.0.0.3")
    assert code == 400 and json.loads(body) == {"error": "invalid_request", "error_description": "Identity not found"}
    code, body = imds("/metadata/identity/oauth2/token?api-version=2018-02-01&resource=x", headers={})
    assert code == 400 and json.loads(body)["error"] == "invalid_request"

"""Scale-set instances of the ARM emulator as real hosts (``sandbox.arm serve --hosts``).

One emulator (with the hosts backend) and one scale set of 3 are shared by the module; the
tests run in order: boot + SSH + custom data + IMDS, restart, reimage, delete, VNet peering,
and finally cleanup when the emulator stops.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import ssl
import time

import pytest

pytestmark = [pytest.mark.hosts, pytest.mark.xdist_group("sandbox-hosts")]

RG = "rg-hosts"
LOC = "westeurope"
CUSTOM_DATA = """#cloud-config
write_files:
  - path: /etc/vmss-custom-data
    content: |
      hello from custom data
runcmd:
  - [sh, -c, "cat /var/lib/cloud/data/instance-id >> /var/tmp/custom-data-runs"]
"""
TAGS = {"cluster": "hosts-test", "role": "server"}


def _poller_result(p):
    return p.result(timeout=300)


@pytest.fixture(scope="module")
def clients(emu):
    from azure.mgmt.compute import ComputeManagementClient
    from azure.mgmt.network import NetworkManagementClient
    from azure.mgmt.resource.resources import ResourceManagementClient
    arm, _ = emu
    kw = arm.client_kwargs()
    cred = arm.credential()
    return (ResourceManagementClient(cred, arm.subscription_id, **kw),
            NetworkManagementClient(cred, arm.subscription_id, **kw),
            ComputeManagementClient(cred, arm.subscription_id, **kw))


def _vnet(net, name, prefix):
    from azure.mgmt.network.models import AddressSpace, Subnet, VirtualNetwork
    subnet = str(next(ipaddress.ip_network(prefix).subnets(new_prefix=24)))
    return _poller_result(net.virtual_networks.begin_create_or_update(RG, name, VirtualNetwork(
        location=LOC, address_space=AddressSpace(address_prefixes=[prefix]),
        subnets=[Subnet(name="default", address_prefix=subnet)])))


def _vmss(compute, name, subnet_id, capacity, key, custom_data=None, identity=True):
    """Create a scale set (REST-shaped body: azure-mgmt-compute 39 sends dicts as they are)."""
    os_profile = {"computerNamePrefix": name, "adminUsername": "azureuser",
                  "linuxConfiguration": {"disablePasswordAuthentication": True, "ssh": {"publicKeys": [
                      {"path": "/home/azureuser/.ssh/authorized_keys", "keyData": key}]}}}
    if custom_data:
        os_profile["customData"] = base64.b64encode(custom_data.encode()).decode()
    body = {
        "location": LOC, "tags": TAGS, "sku": {"name": "Standard_B2s", "tier": "Standard", "capacity": capacity},
        "properties": {
            "upgradePolicy": {"mode": "Manual"},
            "virtualMachineProfile": {
                "osProfile": os_profile,
                "storageProfile": {
                    "imageReference": {"publisher": "Debian", "offer": "debian-12", "sku": "12", "version": "latest"},
                    "osDisk": {"createOption": "FromImage", "caching": "ReadWrite",
                               "managedDisk": {"storageAccountType": "Standard_LRS"}}},
                "networkProfile": {"networkInterfaceConfigurations": [{
                    "name": "nic", "properties": {"primary": True, "ipConfigurations": [
                        {"name": "ipconfig", "properties": {"subnet": {"id": subnet_id}}}]}}]},
            },
        },
    }
    if identity:
        body["identity"] = {"type": "SystemAssigned"}
    return _poller_result(compute.virtual_machine_scale_sets.begin_create_or_update(RG, name, body))


@pytest.fixture(scope="module")
def scale_set(emu, clients):
    arm, sb = emu
    res, net, compute = clients
    res.resource_groups.create_or_update(RG, {"location": LOC})
    v1 = _vnet(net, "vnet-one", "10.94.0.0/16")
    key = open(sb.cli("ssh-key").stdout.strip() + ".pub").read().strip()
    vmss = _vmss(compute, "web", v1.subnets[0].id, 3, key, CUSTOM_DATA)
    vms = list(compute.virtual_machine_scale_set_vms.list(RG, "web"))
    return {"vmss": vmss, "vms": vms, "key": key, "subnet": v1.subnets[0]}


def _host_by_ip(sb):
    return {h["ip"]: h for h in sb.cli_json("list")}


def _instance_ips(arm, vmss_name):
    return {i["instance_id"]: i["private_ip"] for i in arm.instances() if i["vmss_name"] == vmss_name}


def _wait_cloud_init(sb, name):
    r = sb.sh(name, "cloud-init status --wait >/dev/null; cloud-init status")
    assert "done" in r.stdout, r.stdout + r.stderr


def _imds(sb, name, path, metadata=True):
    hdr = "-H 'Metadata: true'" if metadata else ""
    r = sb.sh(name, f"curl -s -w '\\n%{{http_code}}' {hdr} 'http://169.254.169.254{path}'")
    body, _, code = r.stdout.rpartition("\n")
    return int(code), body


def test_instances_boot_as_hosts(emu, scale_set):
    arm, sb = emu
    ips = _instance_ips(arm, "web")
    assert len(ips) == 3 and len(set(ips.values())) == 3
    subnet = ipaddress.ip_network(scale_set["subnet"].address_prefix)
    assert all(ipaddress.ip_address(ip) in subnet for ip in ips.values())
    hosts = _host_by_ip(sb)
    assert set(hosts) == set(ips.values())
    assert all(h["state"] == "running" for h in hosts.values())
    computer_names = {i["private_ip"]: i["computer_name"] for i in arm.instances()}
    for ip, h in hosts.items():
        r = sb.ssh(ip, "hostname")
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == computer_names[ip]
        _wait_cloud_init(sb, h["name"])
        assert sb.sh(h["name"], "cat /etc/vmss-custom-data").stdout == "hello from custom data\n"


def test_imds_identifies_each_instance(emu, scale_set):
    arm, sb = emu
    hosts = _host_by_ip(sb)
    by_ip = {i["private_ip"]: i for i in arm.instances()}
    for ip, h in hosts.items():
        code, body = _imds(sb, h["name"], "/metadata/instance?api-version=2021-02-01")
        assert code == 200
        doc = json.loads(body)
        assert doc["compute"]["vmScaleSetName"] == "web"
        assert doc["compute"]["name"] == by_ip[ip]["imds"]["compute"]["name"]
        assert {t["name"]: t["value"] for t in doc["compute"]["tagsList"]} == TAGS
        assert doc["network"]["interface"][0]["ipv4"]["ipAddress"][0]["privateIpAddress"] == ip
    name = next(iter(hosts.values()))["name"]
    code, body = _imds(sb, name, "/metadata/instance/compute/vmScaleSetName?api-version=2021-02-01&format=text")
    assert (code, body) == (200, "web")
    code, body = _imds(sb, name, "/metadata/instance?api-version=2021-02-01", metadata=False)
    assert code == 400 and "Required metadata header" in body


def test_imds_token_for_system_identity(emu, scale_set):
    arm, sb = emu
    name = next(iter(_host_by_ip(sb).values()))["name"]
    code, body = _imds(sb, name, "/metadata/identity/oauth2/token?api-version=2018-02-01"
                       "&resource=https%3A%2F%2Fmanagement.azure.com%2F")
    assert code == 200, body
    tok = json.loads(body)
    assert set(tok) >= {"access_token", "client_id", "expires_in", "expires_on", "ext_expires_in",
                        "not_before", "resource", "token_type"}
    assert tok["token_type"] == "Bearer" and tok["resource"] == "https://management.azure.com/"
    # The instance reaches ARM as https://management.azure.com (gateway:443 -> emulator, CA trusted).
    r = sb.sh(name, "curl -sk -o /dev/null -w '%{http_code}' "
              "'https://management.azure.com/metadata/endpoints?api-version=2022-09-01'")
    assert r.stdout == "200", r.stdout + r.stderr
    if not _cert_has_azure_names(arm):
        pytest.skip("emulator certificate lacks the management.azure.com SAN (see .notes/hosts-needs-arm.md)")
    sub = arm.subscription_id
    scope = f"/subscriptions/{sub}/resourceGroups/{RG}"
    url = f"https://management.azure.com{scope}/providers/Microsoft.Compute/virtualMachineScaleSets/web?api-version=2024-07-01"
    get = ("curl -s -w '\\n%{http_code}' -H 'Authorization: Bearer " + tok["access_token"] + f"' '{url}'")
    body, _, code = sb.sh(name, get).stdout.rpartition("\n")
    assert code == "403" and "AuthorizationFailed" in body      # the identity has no role yet
    from azure.mgmt.authorization import AuthorizationManagementClient
    from azure.mgmt.authorization.models import RoleAssignmentCreateParameters
    auth = AuthorizationManagementClient(arm.credential(), sub, **arm.client_kwargs())
    principal = next(i["principal_id"] for i in arm.instances() if i["vmss_name"] == "web")
    auth.role_assignments.create(scope, "5a0e6c8e-1b6a-4d36-9a53-0c3a1f6e2b11", RoleAssignmentCreateParameters(
        role_definition_id=f"/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/"
                           "acdd72a7-3385-48ef-bd42-f606fba81ae7",   # Reader
        principal_id=principal, principal_type="ServicePrincipal"))
    body, _, code = sb.sh(name, get).stdout.rpartition("\n")
    assert code == "200", body
    assert json.loads(body)["name"] == "web"


def _cert_has_azure_names(arm) -> bool:
    from cryptography import x509
    host, port = arm.endpoint["authority"].split("://")[1].rsplit(":", 1)
    pem = ssl.get_server_certificate((host, int(port)))
    cert = x509.load_pem_x509_certificate(pem.encode())
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    return "management.azure.com" in names.get_values_for_type(x509.DNSName)


def test_restart_and_reimage(emu, clients, scale_set):
    arm, sb = emu
    _, _, compute = clients
    iid, ip = sorted(_instance_ips(arm, "web").items())[0]
    name = _host_by_ip(sb)[ip]["name"]
    _wait_cloud_init(sb, name)
    first_run = sb.sh(name, "cat /var/tmp/custom-data-runs").stdout.split()
    assert len(first_run) == 1
    sb.sh(name, "echo kept > /root/marker", check=True)
    _poller_result(compute.virtual_machine_scale_set_vms.begin_restart(RG, "web", iid))
    assert sb.sh(name, "cat /root/marker").stdout.strip() == "kept"
    view = compute.virtual_machine_scale_set_vms.get_instance_view(RG, "web", iid)
    assert "PowerState/running" in [s.code for s in view.statuses]
    _poller_result(compute.virtual_machine_scale_set_vms.begin_reimage(RG, "web", iid))
    assert sb.sh(name, "test -e /root/marker").returncode == 1       # root back to the image
    _wait_cloud_init(sb, name)
    runs = sb.sh(name, "cat /var/tmp/custom-data-runs").stdout.split()
    assert len(runs) == 1 and runs != first_run                         # custom data ran again
    assert sb.sh(name, "cat /etc/vmss-custom-data").stdout == "hello from custom data\n"
    # power state comes from the host process
    sb.cli("stop", name)
    view = compute.virtual_machine_scale_set_vms.get_instance_view(RG, "web", iid)
    assert "PowerState/running" not in [s.code for s in view.statuses]
    sb.cli("start", name)


def test_power_off_and_deallocate_keep_the_os_disk(emu, clients, scale_set):
    """As on Azure: a stopped or deallocated instance halts, and start boots the same root
    (custom data does not run again)."""
    arm, sb = emu
    _, _, compute = clients
    iid, ip = sorted(_instance_ips(arm, "web").items())[1]
    name = _host_by_ip(sb)[ip]["name"]
    _wait_cloud_init(sb, name)
    runs = sb.sh(name, "cat /var/tmp/custom-data-runs").stdout.split()
    sb.sh(name, "echo kept > /root/disk-marker", check=True)
    vms = compute.virtual_machine_scale_set_vms
    for stop, power in ((vms.begin_power_off, "PowerState/stopped"), (vms.begin_deallocate, "PowerState/deallocated")):
        _poller_result(stop(RG, "web", iid))
        assert power in [s.code for s in vms.get_instance_view(RG, "web", iid).statuses]
        assert sb.sh(name, "true").returncode != 0                   # the machine is really down
        _poller_result(vms.begin_start(RG, "web", iid))
        assert "PowerState/running" in [s.code for s in vms.get_instance_view(RG, "web", iid).statuses]
        assert sb.sh(name, "cat /root/disk-marker").stdout.strip() == "kept"
        _wait_cloud_init(sb, name)
        assert sb.sh(name, "cat /var/tmp/custom-data-runs").stdout.split() == runs


def test_delete_instance_removes_host(emu, clients, scale_set):
    arm, sb = emu
    _, _, compute = clients
    iid, ip = sorted(_instance_ips(arm, "web").items())[-1]
    name = _host_by_ip(sb)[ip]["name"]
    _poller_result(compute.virtual_machine_scale_set_vms.begin_delete(RG, "web", iid))
    assert ip not in _host_by_ip(sb)
    left = sb.leftovers()
    assert not any(n.endswith(name) for n in left["netns"])
    assert len(_host_by_ip(sb)) == 2


# A process inside an instance, as an on-instance service would run: polls its IMDS Scheduled Events
# (python3 stdlib), approves a Terminate naming its own VM (compute.name) when run with "approve".
WATCHER = r"""
import json, sys, time, urllib.request
BASE = "http://169.254.169.254/metadata"
def call(path, body=None):
    req = urllib.request.Request(BASE + path, headers={"Metadata": "true"}, method="POST" if body else "GET",
                                 data=json.dumps(body).encode() if body else None)
    with urllib.request.urlopen(req, timeout=10) as r:
        raw = r.read()
        return r.status, json.loads(raw) if raw else None
with urllib.request.urlopen(urllib.request.Request(BASE + "/instance/compute/name?api-version=2021-02-01&format=text",
                                                   headers={"Metadata": "true"}), timeout=10) as r:
    me = r.read().decode()
log = open("/var/tmp/scheduled-events.log", "a")
while True:
    try:
        status, doc = call("/scheduledevents?api-version=2020-07-01")
    except OSError as exc:          # an answer other than 200: logged, asked again
        log.write(json.dumps({"error": str(exc)}) + "\n")
        time.sleep(0.3)
        continue
    log.write(json.dumps({"me": me, "doc": doc}) + "\n")
    for e in doc["Events"]:
        if sys.argv[1] == "approve" and e["EventType"] == "Terminate" and me in e["Resources"] \
                and e["EventStatus"] == "Scheduled":
            status, _ = call("/scheduledevents?api-version=2020-07-01", {"StartRequests": [{"EventId": e["EventId"]}]})
            log.write(json.dumps({"approved": e["EventId"], "status": status}) + "\n")
    log.flush()
    time.sleep(0.3)
"""


def test_process_inside_approves_its_terminate_and_the_delete_completes(emu, clients, scale_set):
    arm, sb = emu
    _, _, compute = clients
    compute.virtual_machine_scale_sets.begin_update(RG, "web", {"properties": {"virtualMachineProfile": {
        "scheduledEventsProfile": {"terminateNotificationProfile": {"enable": True, "notBeforeTimeout": "PT15M"}}}}}
    ).result()
    compute.virtual_machine_scale_sets.begin_update_instances(RG, "web", {"instanceIds": ["*"]}).result()
    (iid, ip), (_, other_ip) = sorted(_instance_ips(arm, "web").items())[:2]
    hosts = _host_by_ip(sb)
    leaving, staying = hosts[ip]["name"], hosts[other_ip]["name"]
    for name, mode in ((leaving, "approve"), (staying, "observe")):
        assert sb.sh(name, f"cat > /root/watch.py <<'EOF'\n{WATCHER}\nEOF\n"
                           f"systemd-run --unit=scheduled-events-watch python3 /root/watch.py {mode}").returncode == 0
    for name in (leaving, staying):   # both are polling (which also enables Scheduled Events for the set)
        deadline = time.time() + 60
        while not sb.sh(name, "test -s /var/tmp/scheduled-events.log").returncode == 0:
            assert time.time() < deadline, sb.sh(name, "journalctl -u scheduled-events-watch --no-pager").stdout
            time.sleep(0.2)
    poller = compute.virtual_machine_scale_set_vms.begin_delete(RG, "web", iid)
    poller.result(timeout=120)        # at once: the notice is 15 minutes, the process inside approved it
    assert ip not in _host_by_ip(sb)

    def seen():
        return [json.loads(line) for line in sb.sh(staying, "cat /var/tmp/scheduled-events.log").stdout.splitlines()]

    def terminates(entries):
        return [e for entry in entries if "doc" in entry for e in entry["doc"]["Events"] if e["EventType"] == "Terminate"]
    deadline = time.time() + 60     # the staying VM saw the event (broadcast), then saw it gone
    while not (terminates(seen()) and seen()[-1].get("doc", {}).get("Events") == []):
        assert time.time() < deadline, seen()[-5:]
        time.sleep(0.3)
    first = terminates(seen())[0]
    # Scheduled, or already Started when the approver answered between two of this VM's polls
    assert first["Resources"] == [f"web_{iid}"] and first["EventStatus"] in ("Scheduled", "Started")
    assert not any("approved" in entry for entry in seen())        # the staying VM only watched
    approvals = [line for line in (sb.run / "imds.log").read_text().splitlines()
                 if line.startswith(ip + " ") and '"POST /metadata/scheduledevents' in line]
    assert approvals and approvals[-1].rstrip().endswith(("200 -", "200"))
    sb.sh(staying, "systemctl stop scheduled-events-watch")


def test_vnets_talk_only_when_peered(emu, clients, scale_set):
    from azure.mgmt.network.models import SubResource, VirtualNetworkPeering
    arm, sb = emu
    _, net, compute = clients
    v2 = _vnet(net, "vnet-two", "10.95.0.0/16")
    _vmss(compute, "other", v2.subnets[0].id, 1, scale_set["key"], identity=False)
    ip2 = next(iter(_instance_ips(arm, "other").values()))
    hosts = _host_by_ip(sb)
    web = next(h for ip, h in hosts.items() if ip != ip2)
    other = hosts[ip2]

    def ping(src, ip):              # reachable: retried (first packets may be lost on a busy box)
        return sb.reaches(src["name"], ip)

    def blocked(src, ip):           # unreachable: two tries without any reply
        return not sb.reaches(src["name"], ip, tries=2)

    assert blocked(web, ip2) and blocked(other, web["ip"])
    v1 = net.virtual_networks.get(RG, "vnet-one")
    for a, b, n in ((v1, v2, "one-to-two"), (v2, v1, "two-to-one")):
        _poller_result(net.virtual_network_peerings.begin_create_or_update(RG, a.name, n, VirtualNetworkPeering(
            remote_virtual_network=SubResource(id=b.id), allow_virtual_network_access=True)))
    assert ping(web, ip2) and ping(other, web["ip"])
    _poller_result(net.virtual_network_peerings.begin_delete(RG, "vnet-one", "one-to-two"))
    assert blocked(other, web["ip"]) and blocked(web, ip2)

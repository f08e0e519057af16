"""Microsoft.Compute catalogue reads: the VM sizes of a location and the marketplace images
(publishers -> offers -> skus -> versions -> image), as clients list them before creating a scale set
(a marketplace URN with ``latest`` is resolved by listing its versions).

Shapes: VirtualMachineSizes_List and VirtualMachineImages_{ListPublishers,ListOffers,ListSkus,List,Get}
of azure-rest-api-specs Microsoft.Compute/Compute/stable/2026-03-01 (examples computeRPCommonExamples/
VirtualMachineSizes_List_* and virtualMachineImageExamples/VirtualMachineImage_*). Unknown publishers,
offers, skus and versions answer 404 ``NotFound`` "Artifact: VMImage was not found." (as the service
answers, e.g. Azure/vagrant-azure#147, danielsollondon/azvmimagebuilder#80).

The sizes are the emulator's size list (``quotas.SIZES``, restricted ones left out per location); the
images are the few below, each with its versions oldest first. Scale-set PUTs do not check their image
reference against this list (sandbox/arm/README.md).
"""
from __future__ import annotations

import re

from .. import quotas
from ..errors import ArmError
from ..router import SUB, Response, route
from ..util import normalize_location

# (publisher, offer, sku) -> (OS, Hyper-V generation, architecture, versions oldest first)
IMAGES = {
    ("Debian", "debian-12", "12"): ("Linux", "V1", "x64", ("0.20240507.1721", "0.20240603.1763", "0.20240701.1")),
    ("Debian", "debian-12", "12-gen2"): ("Linux", "V2", "x64", ("0.20240507.1721", "0.20240603.1763",
                                                                "0.20240701.1")),
    ("Debian", "debian-12", "12-arm64"): ("Linux", "V2", "Arm64", ("0.20240603.1763", "0.20240701.1")),
    ("Canonical", "0001-com-ubuntu-server-jammy", "22_04-lts"): ("Linux", "V1", "x64", ("22.04.202406140",
                                                                                        "22.04.202407010")),
    ("Canonical", "0001-com-ubuntu-server-jammy", "22_04-lts-gen2"): ("Linux", "V2", "x64", ("22.04.202406140",
                                                                                             "22.04.202407010")),
    ("Canonical", "ubuntu-24_04-lts", "server"): ("Linux", "V2", "x64", ("24.04.202406140", "24.04.202407010")),
    ("MicrosoftWindowsServer", "WindowsServer", "2012-R2-Datacenter"): ("Windows", "V1", "x64", ("4.127.20180315",)),
    ("MicrosoftWindowsServer", "WindowsServer", "2022-datacenter-azure-edition"): ("Windows", "V2", "x64", (
        "20348.2527.240607", "20348.2582.240703")),
}

IMG = SUB + r"/providers/Microsoft\.Compute/locations/(?P<loc>[^/]+)/publishers"


def _not_found() -> ArmError:
    return ArmError(404, "NotFound", "Artifact: VMImage was not found.")


def _match(value: str, wanted: str | None) -> bool:
    return wanted is None or value.lower() == wanted.lower()


def _images(publisher=None, offer=None, sku=None) -> list[tuple[tuple, tuple]]:
    return [(k, v) for k, v in IMAGES.items()
            if _match(k[0], publisher) and _match(k[1], offer) and _match(k[2], sku)]


def latest_version(image: dict) -> str | None:
    """The newest version of a marketplace image reference, if the catalogue has its sku."""
    found = _images(image.get("publisher") or "", image.get("offer") or "", image.get("sku") or "")
    return found[0][1][3][-1] if found else None


def _image_id(sub, loc, *parts) -> str:
    labels = ("Publishers", "ArtifactTypes/VMImage/Offers", "Skus", "Versions")
    tail = "".join(f"/{label}/{part}" for label, part in zip(labels, parts, strict=False))
    return f"/Subscriptions/{sub}/Providers/Microsoft.Compute/Locations/{loc}{tail}"


def _resource(app, loc, *parts) -> dict:
    return {"name": parts[-1], "location": loc, "id": _image_id(app.sub, loc, *parts)}


def _location(loc: str) -> str:
    return normalize_location(loc, "Microsoft.Compute/locations/publishers")


def _names(found, index: int) -> list[str]:
    seen = {}
    for key, _ in found:
        seen.setdefault(key[index].lower(), key[index])
    return sorted(seen.values(), key=str.lower)


@route("GET", SUB + r"/providers/Microsoft\.Compute/locations/(?P<loc>[^/]+)/vmSizes")
def list_vm_sizes(app, req, sub, loc):
    loc = normalize_location(loc, "Microsoft.Compute/locations/vmSizes")
    return Response(200, {"value": [quotas.vm_size_body(n) for n in quotas.offered(loc)]})


@route("GET", IMG)
def list_publishers(app, req, sub, loc):
    loc = _location(loc)
    return Response(200, [_resource(app, loc, p) for p in _names(_images(), 0)])


@route("GET", IMG + r"/(?P<pub>[^/]+)/artifacttypes/vmimage/offers")
def list_offers(app, req, sub, loc, pub):
    loc, found = _location(loc), _images(pub)
    if not found:
        raise _not_found()
    return Response(200, [_resource(app, loc, found[0][0][0], o) for o in _names(found, 1)])


@route("GET", IMG + r"/(?P<pub>[^/]+)/artifacttypes/vmimage/offers/(?P<offer>[^/]+)/skus")
def list_skus(app, req, sub, loc, pub, offer):
    loc, found = _location(loc), _images(pub, offer)
    if not found:
        raise _not_found()
    key = found[0][0]
    return Response(200, [_resource(app, loc, key[0], key[1], s) for s in _names(found, 2)])


@route("GET", IMG + r"/(?P<pub>[^/]+)/artifacttypes/vmimage/offers/(?P<offer>[^/]+)/skus/(?P<sku>[^/]+)/versions")
def list_versions(app, req, sub, loc, pub, offer, sku):
    """VirtualMachineImages_List with its ``$orderby=name [asc|desc]``, ``$top`` (and ``$expand``)."""
    loc, found = _location(loc), _images(pub, offer, sku)
    if not found:
        raise _not_found()
    key, (_, _, _, versions) = found[0]
    ordered = list(versions)
    if re.search(r"\bname\s+desc\b", req.q("$orderby") or "", re.I):
        ordered.reverse()
    top = req.q("$top")
    if top is not None:
        try:
            ordered = ordered[:max(0, int(top))]
        except ValueError:
            raise ArmError(400, "InvalidParameter", f"The value '{top}' of parameter '$top' is not valid.",
                           target="$top") from None
    return Response(200, [_resource(app, loc, *key, v) for v in ordered])


@route("GET", IMG + r"/(?P<pub>[^/]+)/artifacttypes/vmimage/offers/(?P<offer>[^/]+)/skus/(?P<sku>[^/]+)/versions/"
                    r"(?P<version>[^/]+)")
def get_image(app, req, sub, loc, pub, offer, sku, version):
    loc, found = _location(loc), _images(pub, offer, sku)
    if not found or version not in found[0][1][3]:
        raise _not_found()
    key, (os_type, generation, arch, _) = found[0]
    body = _resource(app, loc, *key, version)
    body["properties"] = {
        "osDiskImage": {"operatingSystem": os_type}, "dataDiskImages": [],
        "automaticOSUpgradeProperties": {"automaticOSUpgradeSupported": os_type == "Windows"},
        "hyperVGeneration": generation, "architecture": arch, "disallowed": {"vmDiskType": "None"},
        "features": [{"name": "IsAcceleratedNetworkSupported", "value": "True"},
                     {"name": "DiskControllerTypes", "value": "SCSI, NVMe" if generation == "V2" else "SCSI"}],
        "imageDeprecationStatus": {"imageState": "Active"}}
    return Response(200, body)

"""Raft snapshot archives as both products write them (consul snapshot / nomad operator snapshot):
a gzipped tar of meta.json (raft's SnapshotMeta), state.bin (the state machine) and SHA256SUMS over
both, verified on every read. `inspect` gives the figures the CLIs print."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import time

from .net import RPCError


def archive(state: dict, index: int, term: int, servers: list[dict], config_index: int) -> bytes:
    body = json.dumps(state, sort_keys=True).encode()
    meta = {"Version": 1, "ID": f"{term}-{index}-{int(time.time() * 1000)}", "Index": index, "Term": term,
            "Peers": "", "Configuration": {"Servers": [{"Suffrage": 0 if s.get("Voter", True) else 1, "ID": s["ID"],
                                                         "Address": s["Address"]} for s in servers]},
            "ConfigurationIndex": config_index, "Size": len(body)}
    files = [("meta.json", json.dumps(meta).encode()), ("state.bin", body)]
    sums = "".join(f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in files).encode()
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for name, data in files + [("SHA256SUMS", sums)]:
            ti = tarfile.TarInfo(name)
            ti.size, ti.mtime, ti.mode = len(data), int(time.time()), 0o600
            tar.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def read(data: bytes) -> tuple[dict, dict]:
    """(meta, state) of an archive; RPCError(400) naming the problem when it is not a valid, intact snapshot."""
    try:
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data)), mode="r") as tar:
            files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    except (OSError, EOFError, tarfile.TarError) as e:
        raise RPCError(f"failed to read snapshot file: {e}", 400) from e
    for name in ("meta.json", "state.bin", "SHA256SUMS"):
        if name not in files:
            raise RPCError(f"failed to read snapshot file: archive is missing {name}", 400)
    for line in files["SHA256SUMS"].decode(errors="replace").splitlines():
        digest, _, name = line.partition("  ")
        if name in files and hashlib.sha256(files[name]).hexdigest() != digest:
            raise RPCError(f"failed to read snapshot file: sha256 hash mismatch for {name}", 400)
    try:
        return json.loads(files["meta.json"]), json.loads(files["state.bin"])
    except ValueError as e:
        raise RPCError(f"failed to read snapshot file: {e}", 400) from e


def stats(state: dict, tables: list[tuple[str, str, bool]]) -> list[dict]:
    """Count and size per record type, largest first, as the CLIs list them. tables: (state key, type name,
    nested) -- nested tables hold one map per node (Consul services and checks)."""
    out = []
    for key, name, nested in tables:
        v = state.get(key)
        if not v:
            continue
        items = [y for x in v.values() for y in x.values()] if nested else (list(v.values()) if isinstance(v, dict) else [v])
        if items:
            out.append({"Name": name, "Count": len(items), "Sum": sum(len(json.dumps(x)) for x in items)})
    return sorted(out, key=lambda s: (-s["Sum"], s["Name"]))


def byte_size(n: int) -> str:
    """Consul's ByteSize (inspect/formatter.go)."""
    for unit, size in (("TB", 1 << 40), ("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10), ("B", 1)):
        if n >= size:
            s = f"{n / size:.1f}"
            return (s[:-2] if s.endswith(".0") else s) + unit
    return "0"


def ibytes(n: int) -> str:
    """go-humanize IBytes."""
    if n < 10:
        return f"{n} B"
    units = ["B", "KiB", "MiB", "GiB", "TiB"]
    e = 0
    v = float(n)
    while v >= 1024 and e < len(units) - 1:
        v /= 1024
        e += 1
    return (f"{v:.0f} {units[e]}" if v >= 10 or e == 0 else f"{v:.1f} {units[e]}")

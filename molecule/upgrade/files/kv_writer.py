#!/usr/bin/python3
"""Writes upgrade-writer/<seq> through the local Consul agent every INTERVAL seconds until STOP_FILE exists.

A failed write is retried for up to RETRY seconds (as a client library would). Writes JSON to OUT: acknowledged
sequence numbers, the ones that failed after retries, and the longest gap between two acknowledged writes."""

import json
import os
import sys
import time
import urllib.request

INTERVAL, RETRY = 0.25, 2.0


def put(seq):
    req = urllib.request.Request(f"http://127.0.0.1:8500/v1/kv/upgrade-writer/{seq:06d}", data=str(seq).encode(),
                                 method="PUT")
    with urllib.request.urlopen(req, timeout=2) as r:
        return r.status == 200 and r.read().strip() == b"true"


def main(stop_file, out):
    acked, failed, retried, last_ack, gap = [], [], 0, None, 0.0
    seq = 0
    while not os.path.exists(stop_file):
        start = time.monotonic()
        ok = False
        while not ok and time.monotonic() - start < RETRY:
            try:
                ok = put(seq)
            except Exception:  # noqa: BLE001 - any failure is retried
                ok = False
            if not ok:
                retried += 1
                time.sleep(0.05)
        now = time.monotonic()
        if ok:
            acked.append(seq)
            gap = max(gap, now - last_ack) if last_ack is not None else gap
            last_ack = now
        else:
            failed.append(seq)
        seq += 1
        time.sleep(max(0.0, INTERVAL - (time.monotonic() - start)))
        with open(out + ".tmp", "w") as f:
            json.dump({"acked": acked, "failed": failed, "retries": retried, "longest_gap": gap}, f)
        os.replace(out + ".tmp", out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))

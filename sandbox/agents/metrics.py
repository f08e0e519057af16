"""Agent telemetry as go-metrics' in-memory sink shows it (GET /v1/agent/metrics, GET /v1/metrics:
Gauges, Points, Counters, Samples of the current 10 s interval) and in the Prometheus text format."""

from __future__ import annotations

import math
import re
import threading
import time


class Metrics:
    def __init__(self, interval: float = 10.0):
        self.interval = interval
        self.lock = threading.Lock()
        self.start = self._bucket()
        self.gauges: dict[tuple, float] = {}
        self.counters: dict[tuple, list[float]] = {}
        self.samples: dict[tuple, list[float]] = {}
        self.totals: dict[tuple, float] = {}  # counters since start (Prometheus counters are cumulative)

    def _bucket(self):
        return math.floor(time.time() / self.interval) * self.interval

    def _roll(self):
        b = self._bucket()
        if b != self.start:
            self.start, self.counters, self.samples = b, {}, {}

    @staticmethod
    def _key(name, labels):
        return (name, tuple(sorted((labels or {}).items())))

    def gauge(self, name: str, value: float, labels: dict | None = None):
        with self.lock:
            self.gauges[self._key(name, labels)] = float(value)

    def incr(self, name: str, n: float = 1, labels: dict | None = None):
        with self.lock:
            self._roll()
            k = self._key(name, labels)
            self.counters.setdefault(k, []).append(float(n))
            self.totals[k] = self.totals.get(k, 0.0) + n

    def sample(self, name: str, value: float, labels: dict | None = None):
        with self.lock:
            self._roll()
            self.samples.setdefault(self._key(name, labels), []).append(float(value))

    @staticmethod
    def _agg(k, vals):
        n = len(vals)
        mean = sum(vals) / n
        var = sum((v - mean) ** 2 for v in vals) / (n - 1) if n > 1 else 0.0
        return {"Name": k[0], "Count": n, "Rate": sum(vals) / 10.0, "Sum": sum(vals), "Min": min(vals), "Max": max(vals),
                "Mean": mean, "Stddev": math.sqrt(var), "Labels": dict(k[1])}

    def display(self) -> dict:
        with self.lock:
            self._roll()
            ts = time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(self.start))
            return {"Timestamp": ts,
                    "Gauges": [{"Name": k[0], "Value": v, "Labels": dict(k[1])} for k, v in sorted(self.gauges.items())],
                    "Points": [],
                    "Counters": [self._agg(k, v) for k, v in sorted(self.counters.items())],
                    "Samples": [self._agg(k, v) for k, v in sorted(self.samples.items())]}

    def prometheus(self) -> str:
        """The text exposition format (names with '_' for '.'), as go-metrics' Prometheus sink exports them."""
        lines = []

        def name(n):
            return re.sub(r"[^a-zA-Z0-9_:]", "_", n)

        def labels(ls):
            return "{" + ",".join(f'{k}="{v}"' for k, v in ls) + "}" if ls else ""

        with self.lock:
            for (n, ls), v in sorted(self.gauges.items()):
                lines += [f"# HELP {name(n)} {n}", f"# TYPE {name(n)} gauge", f"{name(n)}{labels(ls)} {v:g}"]
            for (n, ls), v in sorted(self.totals.items()):
                lines += [f"# HELP {name(n)} {n}", f"# TYPE {name(n)} counter", f"{name(n)}{labels(ls)} {v:g}"]
            for (n, ls), vals in sorted(self.samples.items()):
                lines += [f"# HELP {name(n)} {n}", f"# TYPE {name(n)} summary",
                          f"{name(n)}_sum{labels(ls)} {sum(vals):g}", f"{name(n)}_count{labels(ls)} {len(vals)}"]
        return "\n".join(lines) + "\n"


def process_gauges(metrics: Metrics, prefix: str):
    """The runtime gauges both products publish, from this process."""
    try:
        with open("/proc/self/statm") as f:
            rss_pages = int(f.read().split()[1])
        import os
        metrics.gauge(f"{prefix}.runtime.alloc_bytes", rss_pages * os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, IndexError):
        pass
    metrics.gauge(f"{prefix}.runtime.num_goroutines", threading.active_count())

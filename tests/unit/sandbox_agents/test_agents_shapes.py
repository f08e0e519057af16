"""The structural comparator used against the reference API samples must catch differences."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from sandbox.agents.shapes import conforms, fill

REF = Path("/work/shared/reference/hashicorp")


def _samples(p):
    return json.loads((REF / f"{p}-api-samples.json").read_text())


def test_samples_conform_to_themselves():
    for p in ("consul", "nomad"):
        for k, v in _samples(p).items():
            if not k.startswith("_"):
                assert conforms(v, v) == [], k


def test_detects_missing_key_and_wrong_type():
    s = _samples("consul")["GET /v1/agent/self"]
    a = copy.deepcopy(s)
    del a["Config"]["NodeID"]
    a["Member"]["Port"] = "8301"
    errs = conforms(s, a)
    assert "$.Config: missing key 'NodeID'" in errs
    assert "$.Member.Port: expected number, got string" in errs


def test_freeform_maps_and_lists():
    s = _samples("consul")["GET /v1/agent/members"]
    ok = [dict(s[0], Tags={"anything": "goes"})]
    assert conforms(s, ok) == []
    bad = [dict(s[0], Tags={"x": 1})]
    assert conforms(s, bad) == ["$[0].Tags.x: expected string, got number"]
    assert conforms(s, {"not": "a list"}) == ["$: expected list, got object"]


def test_fill_adds_zero_values():
    s = _samples("nomad")["GET /v1/nodes"][0]
    n = fill({"ID": "x", "Drivers": {"raw_exec": {"Detected": True}}}, s)
    assert conforms(s, n) == []
    assert n["Name"] == "" and n["CreateIndex"] == 0 and n["Drivers"]["raw_exec"]["Healthy"] is False

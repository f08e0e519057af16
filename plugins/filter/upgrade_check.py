# Copyright: (c) 2026, hashistack.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter ``upgrade_check``: which members of a Consul or Nomad cluster need an upgrade to a target version, and
whether HashiCorp's upgrade rules allow the step (documentation: upgrade_check.yml beside this file)."""

from __future__ import annotations

import re

from ansible.errors import AnsibleFilterError

_VERSION = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)(?:[-+][0-9A-Za-z.+-]*)?$")

# The largest minor-version jump each product's upgrade docs support in one step, and where the rule is written.
RULES = {
    "consul": {
        "max_minor_jump": 2,
        "rule": "Consul's general upgrade path: each upgrade should jump at most 2 major versions (1.N to 1.N+2) "
                "(developer.hashicorp.com/consul/docs/upgrade/instructions)",
    },
    "nomad": {
        "max_minor_jump": 1,
        "rule": "Nomad is backward compatible for 1 point release; upgrading 2 point releases is untested and "
                "unsupported (developer.hashicorp.com/nomad/docs/upgrade)",
    },
}
DOWNGRADE_RULE = {
    "consul": "HashiCorp supports no Consul downgrade in place (a rollback is a snapshot restore)",
    "nomad": "Nomad does not support downgrading: clients need draining and a wiped data directory, servers a "
             "re-provisioned cluster (developer.hashicorp.com/nomad/docs/upgrade)",
}


def parse_version(value):
    """(major, minor, patch) of '1.20.1', 'v1.9.3', '1.20.1+ent' or '1.9.3-beta1'; None when unparseable."""
    m = _VERSION.match(str(value or "").strip())
    return tuple(int(p) for p in m.groups()) if m else None


def _fmt(v):
    return ".".join(str(p) for p in v)


def upgrade_check(versions, target, product, allow_downgrade=False):
    """Plan one product's upgrade. versions: {member: reported version or None}. Returns {product, target, todo,
    done, errors} where todo/done are sorted member names and errors name the members, the rule and the fix."""
    if product not in RULES:
        raise AnsibleFilterError(f"upgrade_check: product must be one of {sorted(RULES)}, got {product!r}")
    if not isinstance(versions, dict):
        raise AnsibleFilterError(f"upgrade_check: versions must be a dict of member -> version, got {type(versions).__name__}")
    name = product.capitalize()
    errors, todo, done = [], [], []
    want = parse_version(target)
    if want is None:
        return {"product": product, "target": target, "todo": [], "done": [],
                "errors": [f"{name} target version {target!r} is not a release version like 1.20.1: set "
                           f"{product}_version in the cluster spec or with -e {product}_version=X.Y.Z"]}
    unknown = sorted(m for m, v in versions.items() if parse_version(v) is None)
    if unknown:
        errors.append(f"{name} version of {', '.join(unknown)} is unknown (reported: "
                      f"{', '.join(repr(versions[m]) for m in unknown)}): every member must be running and reachable "
                      f"before an upgrade; start the agents (or converge with site.yml) and re-run")
    by_step = {}
    for member, raw in sorted(versions.items()):
        cur = parse_version(raw)
        if cur is None:
            continue
        if cur == want:
            done.append(member)
            continue
        todo.append(member)
        by_step.setdefault(cur, []).append(member)
    rule = RULES[product]
    for cur, members in sorted(by_step.items()):
        who = ", ".join(members)
        if cur > want:
            if not allow_downgrade:
                errors.append(f"Refusing to downgrade {name} on {who} from {_fmt(cur)} to {_fmt(want)}: "
                              f"{DOWNGRADE_RULE[product]}. Fix: set {product}_version to {_fmt(cur)} or newer, or pass "
                              f"-e hashistack_upgrade_allow_downgrade=true if you accept the risk")
            continue
        if cur[0] != want[0]:
            errors.append(f"{name} {_fmt(cur)} -> {_fmt(want)} on {who} crosses a major version, which needs the "
                          f"dedicated upgrade instructions of that release; this playbook refuses it. Fix: follow "
                          f"HashiCorp's instructions for {want[0]}.x")
        elif want[1] - cur[1] > rule["max_minor_jump"]:
            step = f"{cur[0]}.{cur[1] + rule['max_minor_jump']}.x"
            errors.append(f"{name} {_fmt(cur)} -> {_fmt(want)} on {who} is not a supported jump: {rule['rule']}. "
                          f"Fix: upgrade to the latest {step} first, then to {_fmt(want)}")
    return {"product": product, "target": target, "todo": todo, "done": done, "errors": errors}


class FilterModule:
    """hashistack.azure upgrade filters."""

    def filters(self):
        return {"upgrade_check": upgrade_check}

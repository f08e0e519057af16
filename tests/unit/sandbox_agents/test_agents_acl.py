"""The ACL rule engine: policy parsing as the products check it, Consul's exact/prefix/merge/default rules,
Nomad's namespace capabilities and globs, the FSM's bootstrap-once rule."""

from __future__ import annotations

import pytest

from sandbox.agents import acl


def _authz(product, *texts, default_allow=False, management=False):
    return acl.Authorizer(product, management, [acl.parse_rules(product, t) for t in texts], default_allow)


def test_consul_exact_beats_prefix_and_longest_prefix_wins():
    a = _authz("consul", 'key_prefix "" { policy = "read" }\nkey_prefix "app/" { policy = "write" }\n'
                         'key_prefix "app/secret/" { policy = "deny" }\nkey "app/secret/ok" { policy = "read" }')
    assert a.allowed("key", "read", "other") and not a.allowed("key", "write", "other")
    assert a.allowed("key", "write", "app/x")
    assert not a.allowed("key", "read", "app/secret/x")
    assert a.allowed("key", "read", "app/secret/ok") and not a.allowed("key", "write", "app/secret/ok")


def test_consul_policies_merge_and_default_policy():
    a = _authz("consul", 'node_prefix "web" { policy = "read" }', 'node_prefix "web" { policy = "write" }')
    assert a.allowed("node", "write", "web-1")
    a = _authz("consul", 'node_prefix "web" { policy = "write" }', 'node_prefix "web" { policy = "deny" }')
    assert not a.allowed("node", "read", "web-1")
    # nothing matched: the default policy
    assert not _authz("consul", 'operator = "read"').allowed("key", "read", "k")
    assert _authz("consul", 'operator = "read"', default_allow=True).allowed("key", "write", "k")
    a = _authz("consul", 'operator = "read"')
    assert a.allowed("operator", "read") and not a.allowed("operator", "write")
    assert not a.allowed("management", "")
    assert _authz("consul", management=True).allowed("management", "")
    # no object named (a write whose object is in the body): only a rule covering every name grants it
    assert not _authz("consul", 'key_prefix "app/" { policy = "write" }').allowed("key", "write")
    assert _authz("consul", 'key_prefix "" { policy = "write" }').allowed("key", "write")


@pytest.mark.parametrize("rules,why", [('key_prefix "" { policy = "maybe" }', "Invalid key_prefix policy"),
                                       ('node "" { policy = "list" }', "Invalid node policy"),
                                       ('mystery = "read"', "unsupported rule 'mystery'"),
                                       ('key_prefix "" {', "Failed to parse ACL rules")])
def test_consul_rules_refused(rules, why):
    with pytest.raises(ValueError, match=why):
        acl.parse_rules("consul", rules)


def test_nomad_namespaces_capabilities_and_blocks():
    a = _authz("nomad", 'namespace "default" { policy = "read" }\nnamespace "dev-*" { policy = "write" }\n'
                        'namespace "dev-locked" { policy = "deny" }\nnamespace "ops" { capabilities = ["submit-job"] }\n'
                        'node { policy = "read" }\nagent { policy = "write" }')
    assert a.allowed("namespace", "list-jobs", "default") and not a.allowed("namespace", "submit-job", "default")
    assert a.allowed("namespace", "submit-job", "dev-x") and a.allowed("namespace", "alloc-lifecycle", "dev-x")
    assert not a.allowed("namespace", "read-job", "dev-locked")
    assert a.allowed("namespace", "submit-job", "ops") and not a.allowed("namespace", "read-job", "ops")
    assert not a.allowed("namespace", "read-job", "other")
    assert a.allowed("node", "read") and not a.allowed("node", "write")
    assert a.allowed("agent", "write") and a.allowed("agent", "read")
    assert not a.allowed("operator", "read") and not a.allowed("management", "")
    with pytest.raises(ValueError, match="Invalid namespace policy"):
        acl.parse_rules("nomad", 'namespace "x" { policy = "all" }')


def test_bootstrap_once_and_policy_names_unique():
    state = {}
    tok = {"AccessorID": "a", "SecretID": "s"}
    assert acl.apply(state, {"op": "acl_bootstrap", "token": tok}, 5)["CreateIndex"] == 5
    assert acl.apply(state, {"op": "acl_bootstrap", "token": dict(tok, AccessorID="b")}, 6) == \
        {"error": "bootstrap", "reset_index": 5}
    assert acl.find_token(state, "s")["AccessorID"] == "a"
    acl.apply(state, {"op": "acl_policy_set", "policy": {"ID": "p1", "Name": "n"}}, 7)
    assert acl.apply(state, {"op": "acl_policy_set", "policy": {"ID": "p2", "Name": "n"}}, 8) == {"error": "name", "name": "n"}
    assert acl.table({}) == {"bootstrap_index": 0, "policies": {}, "tokens": {}}

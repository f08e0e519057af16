"""Consul and Nomad stand-ins, packaged as official-style releases, plus a release mirror.

A test double for the collection's roles and upgrade playbook: the product always targets the real
binaries from releases.hashicorp.com; tests point it at the local mirror.

    python -m sandbox.agents build --consul 1.20.1 --consul 1.20.2 --nomad 1.9.3 --nomad 1.9.4 --out DIR
    python -m sandbox.agents mirror --dir DIR --port 8080 [--bind 0.0.0.0]
    python -m sandbox.agents consul 1.20.1 agent -config-dir ...   (run from the source tree, no build)

Release tree (like releases.hashicorp.com): DIR/<product>/index.json, DIR/<product>/<V>/index.json,
DIR/<product>/<V>/<product>_<V>_linux_amd64.zip (one executable; a zipapp run by python3),
<product>_<V>_SHA256SUMS and .sig (detached binary signature by the sandbox key; public key in
DIR/sandbox-release-key.asc; the key lives in DIR/.gnupg and is reused by later builds).
Zips and SHA256SUMS are byte-reproducible.

Behaviour (see the modules): serf-like gossip (serf.py; refuses other datacenter/region and other
gossip key, and says why in the log), raft-style consensus with majority-acknowledged writes,
pre-vote, leadership transfer and autopilot (raft.py), config checking against the documented keys
(config.py, hcl.py), go-sockaddr templates (sockaddr.py), retry_join incl. provider=azure
(autojoin.py), Consul (consul.py) and Nomad (nomad.py: scheduler, heartbeats, drain, raw_exec
allocations as real processes that survive an agent restart and are re-attached).

Timing knobs are the real config keys: Consul performance.raft_multiplier (election timeout
~1 s x multiplier, default 5), autopilot.server_stabilization_time / last_contact_threshold /
cleanup_dead_servers; Nomad server.raft_multiplier (default 1), server.heartbeat_grace,
server.min_heartbeat_ttl, autopilot.*; retry_interval. Sandbox-only environment knobs (never used by
the product): HASHISTACK_SANDBOX_IMDS_URL / HASHISTACK_SANDBOX_ARM_URL override IMDS and
https://management.azure.com for cloud auto-join (TLS trust from SSL_CERT_FILE).

Not implemented (and refused when configured, see config.IMPLEMENTED): ACL enforcement, TLS, DNS, WAN
federation, Connect, Nomad system/batch jobs and canary deployments. The HTTP API's route tables declare
each endpoint's ACL; BaseAgent.authorize and BaseAgent.tls_context are where enforcement and TLS go.
"""

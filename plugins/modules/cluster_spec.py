#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) hashistack.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: cluster_spec
short_description: Validate a cluster spec and derive the whole cluster from it (the documented spec schema)
version_added: 0.1.0
description:
  - The one cluster spec of this collection, C(hashistack_spec), is a single vars file; its schema, with every default,
    is O(spec) below. A minimal spec names the cluster, the Azure location and the client pools.
  - Validates the spec and returns the normalized cluster RV(cluster) that the C(hashistack.azure.azure_infra),
    C(hashistack.azure.consul) and C(hashistack.azure.nomad) roles work from, the names of every Azure resource, the
    derived address spaces and the tags of every scale set (read back by the C(hashistack.azure.vmss) inventory).
  - An invalid spec fails before anything else happens, with every problem listed at once, each naming the field, the
    cause and the fix. Refused, among others, are a server count that is not 1, 3, 5 or 7; a pool that sets its own Consul
    datacenter or Nomad region; unknown keys; invalid names or CIDRs; overlapping address spaces; a location with no
    address space when O(spec.networks) is given; two pools with the same name.
  - Talks to nothing (no Azure call) and never reports a change.
options:
  spec:
    description: The cluster spec (usually the variable C(hashistack_spec)).
    type: dict
    required: true
    suboptions:
      cluster:
        description:
          - Cluster name, 1 to 31 lowercase letters, digits and C(-), starting with a letter or digit.
          - Part of every Azure resource name (scale set C(CLUSTER-POOL), virtual network C(CLUSTER-LOCATION), network
            security group C(CLUSTER-nodes)) and the value of the C(hashistack_cluster) tag.
        type: str
        required: true
      azure:
        description: Where the cluster lives in Azure.
        type: dict
        required: true
        suboptions:
          subscription_id:
            description:
              - Subscription id (a GUID). Needed by C(playbooks/site.yml) (resources, role assignment scopes) and by
                the agents' cloud auto-join.
            type: str
          resource_group:
            description: Resource group of every resource of the cluster. Default V(hashistack-CLUSTER).
            type: str
          location:
            description:
              - Default Azure location (short name such as V(westeurope)) of the servers and of every pool.
            type: str
            required: true
      consul_datacenter:
        description:
          - Consul datacenter of every agent in every location (lowercase letters, digits, C(_) and C(-)). There is one
            Consul datacenter per cluster; pools cannot have their own.
        type: str
        default: dc1
      nomad_region:
        description: Nomad region of every server and client (letters, digits, C(_) and C(-)); pools cannot have their own.
        type: str
        default: global
      consul_version:
        description: Consul version the agents run (the version this collection is tested with by default).
        type: str
        default: 1.20.1
      nomad_version:
        description: Nomad version the agents run (the version this collection is tested with by default).
        type: str
        default: 1.9.3
      image:
        description: Marketplace image of every instance, C(publisher:offer:sku[:version]).
        type: str
        default: Debian:debian-12:12-gen2:latest
      admin_user:
        description: Admin user of the instances (SSH login).
        type: str
        default: azureuser
      ssh_public_keys:
        description: OpenSSH public keys (strings) of O(spec.admin_user).
        type: list
        elements: str
        default: []
      ssh_sources:
        description:
          - CIDRs allowed to reach SSH (port 22) on the instances.
          - Default the cluster's address spaces (every location's network). V([]) allows SSH from nowhere.
        type: list
        elements: str
      servers:
        description: The server group (Consul and Nomad servers), pool V(servers), scale set C(CLUSTER-servers).
        type: dict
        default: {}
        suboptions:
          count:
            description:
              - Number of servers, 1, 3, 5 or 7 (C(bootstrap_expect) of Consul and Nomad). An even count tolerates no
                more failures than one server fewer and is refused, as are 0 and more than 7.
            type: int
            default: 3
          vm_size:
            description: VM size of the servers; also the default of every pool's O(spec.pools[].vm_size).
            type: str
            default: Standard_B2s
          location:
            description: Location of the servers. Default O(spec.azure.location).
            type: str
          zones:
            description: Availability zones (V(1), V(2), V(3)) of the servers; empty for a regional scale set.
            type: list
            elements: str
            default: []
      pools:
        description: Client pools (Nomad clients, Consul clients), one scale set C(CLUSTER-NAME) each; may be empty.
        type: list
        elements: dict
        default: []
        suboptions:
          name:
            description:
              - Pool name, 1 to 31 lowercase letters, digits and C(-); unique, and not V(servers) (the server group).
            type: str
            required: true
          count:
            description: Number of instances, 0 or more.
            type: int
            default: 1
          vm_size:
            description: VM size. Default O(spec.servers.vm_size).
            type: str
          location:
            description: Location of the pool. Default O(spec.azure.location).
            type: str
          zones:
            description: Availability zones (V(1), V(2), V(3)); empty for a regional scale set.
            type: list
            elements: str
            default: []
          nomad_datacenter:
            description: Nomad datacenter of the pool's clients. Default the pool's location.
            type: str
          node_class:
            description: Nomad node class of the pool's clients. Default the pool's name.
            type: str
          consul_datacenter:
            description:
              - Refused when set. Every pool is in the cluster's O(spec.consul_datacenter), which spans all locations
                (a second datacenter would need WAN federation); listed here only so that the error says why.
            type: str
          nomad_region:
            description:
              - Refused when set. Every pool is in the cluster's O(spec.nomad_region); give the pool its own
                O(spec.pools[].nomad_datacenter) instead. Listed here only so that the error says why.
            type: str
      networks:
        description:
          - "Address space (one CIDR, a /24 or larger) of the virtual network of each location, by location, for example
            V({westeurope: 10.77.0.0/16, northeurope: 10.78.0.0/16}). The networks are peered, so the spaces must not
            overlap. Each network has one subnet C(nodes), the first /24 of its space."
          - When given, every location of the servers and pools needs an entry (and only those).
          - When left out, derived in the order of the locations (the servers' first, then the pools' in order) as
            V(10.77.0.0/16), V(10.78.0.0/16) and so on.
        type: dict
notes:
  - The roles C(hashistack.azure.consul) and C(hashistack.azure.nomad) call this module once per play
    (C(run_once), on the controller) with C(hashistack_spec) and keep the result as the fact C(hashistack_cluster).
attributes:
  check_mode:
    support: full
    details: This module never changes anything.
  diff_mode:
    support: none
  platform:
    platforms: posix
    details: Runs on the controller (C(delegate_to) V(localhost)); it needs nothing from the managed hosts.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
author:
  - hashistack.azure maintainers (@hashistack)
requirements:
  - netaddr
'''

EXAMPLES = r'''
# group_vars/all/cluster.yml - a minimal spec: 3 servers and two pools in two locations
# hashistack_spec:
#   cluster: prod
#   azure: {subscription_id: 0b1f6471-1bf0-4dda-aec3-cb9272f09590, location: westeurope}
#   ssh_public_keys: ["ssh-ed25519 AAAA... me@laptop"]
#   ssh_sources: [203.0.113.0/24]
#   pools:
#     - {name: web, count: 2}
#     - {name: batch, count: 3, location: northeurope, vm_size: Standard_D4s_v5}

- name: Validate the spec and derive the cluster
  hashistack.azure.cluster_spec:
    spec: "{{ hashistack_spec }}"
  register: spec_result
  delegate_to: localhost
  run_once: true

- name: Keep the cluster for the other plays and roles
  ansible.builtin.set_fact:
    hashistack_cluster: "{{ spec_result.cluster }}"

- name: Show where each pool goes
  ansible.builtin.debug:
    msg: "{{ item.name }}: {{ item.capacity }} x {{ item.vm_size }} in {{ item.location }}, tags {{ item.tags }}"
  loop: "{{ hashistack_cluster.scale_sets }}"
'''

RETURN = r'''
cluster:
  description:
    - The normalized cluster, every default applied. Lists and dicts keep the spec's order (servers first).
  returned: success
  type: dict
  contains:
    cluster:
      description: Cluster name.
      type: str
      sample: prod
    azure:
      description: C(subscription_id) (V(null) when not given), C(resource_group) (default applied), C(location).
      type: dict
      sample: {subscription_id: 0b1f6471-1bf0-4dda-aec3-cb9272f09590, resource_group: hashistack-prod, location: westeurope}
    consul_datacenter:
      description: Consul datacenter of every agent.
      type: str
      sample: dc1
    nomad_region:
      description: Nomad region of every agent.
      type: str
      sample: global
    consul_version:
      description: Consul version.
      type: str
      sample: 1.20.1
    nomad_version:
      description: Nomad version.
      type: str
      sample: 1.9.3
    image:
      description: Image of every instance.
      type: str
      sample: Debian:debian-12:12-gen2:latest
    admin_user:
      description: Admin user of the instances.
      type: str
      sample: azureuser
    ssh_public_keys:
      description: Public keys of the admin user.
      type: list
      elements: str
      sample: []
    ssh_sources:
      description: CIDRs allowed to reach SSH (default applied).
      type: list
      elements: str
      sample: [10.77.0.0/16, 10.78.0.0/16]
    server_pool:
      description: Name of the server group's pool in RV(cluster.pools), always V(servers).
      type: str
      sample: servers
    server_count:
      description: Number of servers (C(bootstrap_expect)).
      type: int
      sample: 3
    pools:
      description:
        - Every pool by name, the server group (V(servers)) first, then the client pools in the spec's order.
        - Each has C(role) (V(server) or V(client)), C(count), C(vm_size), C(location), C(zones),
          C(nomad_datacenter) (the pool's, else its location), C(node_class) (the pool's, else its name), C(scale_set)
          (its name) and C(network) (the name of its location's virtual network).
      type: dict
      sample:
        servers: {role: server, count: 3, vm_size: Standard_B2s, location: westeurope, zones: [],
                  nomad_datacenter: westeurope, node_class: servers, scale_set: prod-servers, network: prod-westeurope}
        web: {role: client, count: 2, vm_size: Standard_B2s, location: northeurope, zones: [],
              nomad_datacenter: northeurope, node_class: web, scale_set: prod-web, network: prod-northeurope}
    locations:
      description: Every location in use, the servers' first, then the pools' in order.
      type: list
      elements: str
      sample: [westeurope, northeurope]
    networks:
      description:
        - The virtual network of each location, by location - C(name), C(location), C(address_space) (CIDR, given or
          derived), C(subnet) (CIDR of the subnet, the first /24), C(subnet_name) (V(nodes)) and C(security_group)
          (the network security group of that location's nodes; Azure attaches an NSG only to NICs of its region).
      type: dict
      sample:
        westeurope: {name: prod-westeurope, location: westeurope, address_space: 10.77.0.0/16, subnet: 10.77.0.0/24,
                     subnet_name: nodes, security_group: prod-nodes-westeurope}
    scale_sets:
      description:
        - One scale set per pool, servers first - C(name), C(pool), C(role), C(location), C(vm_size), C(capacity),
          C(zones), C(network) (virtual network name) and C(tags), the cluster tags C(hashistack_cluster),
          C(hashistack_role), C(hashistack_pool), C(hashistack_consul_datacenter), C(hashistack_nomad_region) and
          C(hashistack_nomad_datacenter).
      type: list
      elements: dict
      sample:
        - name: prod-web
          pool: web
          role: client
          location: northeurope
          vm_size: Standard_B2s
          capacity: 2
          zones: []
          network: prod-northeurope
          tags: {hashistack_cluster: prod, hashistack_role: client, hashistack_pool: web,
                 hashistack_consul_datacenter: dc1, hashistack_nomad_region: global, hashistack_nomad_datacenter: northeurope}
    tags:
      description: Tags of the resource group and of every resource of the cluster.
      type: dict
      sample: {hashistack_cluster: prod}
    key_vault:
      description:
        - The cluster's Azure Key Vault - C(name) (3-24 characters, V(hs-) plus the cluster name cut to 12 characters
          plus a hash of subscription, resource group and cluster, so it is unique enough for the global vault namespace)
          and C(gossip_secrets) (secret name of each product's gossip key, by product).
        - C(azure_infra) creates the vault and stores the secrets; instances read them at boot with their managed identity.
      type: dict
      sample: {name: hs-prod-3f2a9c1e, gossip_secrets: {consul: consul-gossip-key, nomad: nomad-gossip-key}}
'''

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.hashistack.azure.plugins.module_utils._cluster_spec import OPTIONS, SpecError, normalize
from ansible_collections.hashistack.azure.plugins.module_utils._network import HAS_NETADDR, NETADDR_IMPORT_ERROR


def main():
    module = AnsibleModule(argument_spec=dict(spec=dict(type='dict', required=True, options=OPTIONS)),
                           supports_check_mode=True)
    if not HAS_NETADDR:
        module.fail_json(msg=missing_required_lib('netaddr'), exception=NETADDR_IMPORT_ERROR)
    try:
        cluster = normalize(module.params['spec'])
    except SpecError as exc:
        module.fail_json(msg=str(exc), errors=exc.errors)
    module.exit_json(changed=False, cluster=cluster)


if __name__ == '__main__':
    main()

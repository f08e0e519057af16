# -*- coding: utf-8 -*-
# Copyright (c) hashistack.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:

    # Authentication and connection options shared by every hashistack.azure module and plugin.
    DOCUMENTATION = r'''
options:
  auth_source:
    description:
      - Where the credential comes from.
      - V(auto) uses, in this order, an explicit service principal (O(client_id), O(secret), O(tenant)),
        the environment variables, the credential file, the Azure CLI login when C(az) is installed, and
        otherwise the managed identity of the machine.
      - V(env) uses a service principal from the environment (C(AZURE_CLIENT_ID), C(AZURE_SECRET) or
        C(AZURE_CLIENT_SECRET), C(AZURE_TENANT) or C(AZURE_TENANT_ID); or C(ARM_CLIENT_ID), C(ARM_CLIENT_SECRET),
        C(ARM_TENANT_ID)).
      - V(cli) uses the Azure CLI login (C(az login)); the subscription defaults to the CLI's current one.
      - V(msi) uses the managed identity of the Azure VM; the subscription defaults to the VM's own (from the
        instance metadata service). O(client_id) selects a user-assigned identity.
      - V(credential_file) reads the INI file C(~/.azure/credentials) (or the file named by C(AZURE_CREDENTIAL_FILE)),
        section O(profile), keys C(subscription_id), C(client_id), C(secret), C(tenant), C(cloud_environment).
      - Falls back to the E(AZURE_AUTH_SOURCE) environment variable, then V(auto).
    type: str
    choices: [auto, env, cli, msi, credential_file]
  profile:
    description:
      - Section of the credential file to use.
      - Falls back to E(AZURE_PROFILE), then V(default).
    type: str
  subscription_id:
    description:
      - Azure subscription id.
      - Falls back to E(AZURE_SUBSCRIPTION_ID), E(ARM_SUBSCRIPTION_ID), the credential file, the CLI or the
        instance metadata service depending on O(auth_source).
    type: str
  client_id:
    description:
      - Application (client) id of a service principal, or the client id of a user-assigned managed identity
        with O(auth_source=msi).
      - Falls back to E(AZURE_CLIENT_ID), E(ARM_CLIENT_ID).
    type: str
  secret:
    description:
      - Client secret of the service principal. Never logged.
      - Falls back to E(AZURE_SECRET), E(AZURE_CLIENT_SECRET), E(ARM_CLIENT_SECRET).
    type: str
    aliases: [client_secret]
  tenant:
    description:
      - Microsoft Entra tenant id of the service principal.
      - Falls back to E(AZURE_TENANT), E(AZURE_TENANT_ID), E(ARM_TENANT_ID).
    type: str
    aliases: [tenant_id]
  cloud_environment:
    description:
      - V(AzureCloud), V(AzureChinaCloud), V(AzureUSGovernment), or an https URL of a Resource Manager endpoint
        whose C(/metadata/endpoints) document describes the cloud (Azure Stack, private clouds, the sandbox
        emulator); the resource manager URL, login endpoint and token audience are taken from it.
      - Falls back to E(AZURE_CLOUD_ENVIRONMENT), E(ARM_ENVIRONMENT), then V(AzureCloud).
    type: str
  ca_bundle:
    description:
      - PEM file with the CA certificates to trust for Resource Manager, the login endpoint and the cloud
        metadata. Used for SDK clients and the credential.
      - Falls back to E(AZURE_CA_BUNDLE). C(REQUESTS_CA_BUNDLE) is honoured by the SDK as well.
    type: path
requirements:
  - python >= 3.9
  - azure-identity >= 1.15
  - azure-mgmt-compute >= 34
  - azure-mgmt-network >= 28
  - azure-mgmt-resource >= 23
  - azure-mgmt-authorization >= 4
notes:
  - Set these options once for a play with C(module_defaults) and the action group C(group/hashistack.azure.azure).
  - Requests are retried on throttling (429) and transient failures (5xx, connection resets), honouring
    C(Retry-After), with a bounded number of attempts and total time.
'''

    # Tag options for modules that manage tags.
    TAGS = r'''
options:
  tags:
    description:
      - Tags to set on the resource.
      - With O(purge_tags=false) (the default) existing tags not named here are kept.
    type: dict
  purge_tags:
    description:
      - Remove tags that are not listed in O(tags). Ignored when O(tags) is not set.
    type: bool
    default: false
'''

    # The state option of modules that manage one resource (module_utils/_module.py STATE_ARGSPEC).
    STATE = r'''
options:
  state:
    description:
      - Whether the resource should exist.
      - V(absent) deletes it; a resource that does not exist is left alone (no change).
    type: str
    choices: [present, absent]
    default: present
'''

    # The wait/timeout options of modules that start long-running operations (module_utils/_module.py wait_argspec).
    # The default timeout differs per module, so the module states it: "timeout: {default: 600}" under its options.
    WAIT = r'''
options:
  wait:
    description:
      - Wait for each long-running operation (create, update, delete or action) to finish before the task returns.
      - With V(false) the task returns as soon as Azure has accepted the request.
    type: bool
    default: true
  timeout:
    description:
      - Seconds to wait for each long-running operation. When it runs out the task fails and says so;
        Azure keeps working on the operation and a re-run waits for it again.
    type: int
'''

    # The scale-set tag filter of the vmss_info module and the vmss inventory plugin (module_utils/_vmss_readers.py).
    TAG_FILTER = r'''
options:
  tags:
    description:
      - Only include scale sets that carry all of these tags (matched on the scale set's own tags).
      - Tag names match case-insensitively (as Azure treats them); values match exactly, case-sensitively.
      - A value may be a string, a list of strings (any of them matches), or V(null) (the tag must exist, any value).
      - "Example: C({hashistack_cluster: prod, hashistack_pool: [web, batch]})."
    type: dict
    default: {}
'''

    # Attribute descriptions; modules set the support level.
    ATTRIBUTES = r'''
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying the target.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
  action_group:
    description: Use C(group/hashistack.azure.azure) in C(module_defaults) to set defaults for this module.
    support: full
    membership:
      - hashistack.azure.azure
'''

    # Support levels of the modules that change things: full check mode and diff.
    FULL_SUPPORT = r'''
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
'''

    # Support levels of *_info modules.
    INFO_MODULE = r'''
attributes:
  check_mode:
    support: full
    details: This module never changes anything.
  diff_mode:
    support: none
'''

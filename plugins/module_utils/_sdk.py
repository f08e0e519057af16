# -*- coding: utf-8 -*-
# Copyright (c) hashistack.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The Azure SDK as the rest of the collection sees it (private API).

The only module that imports ``azure.core`` and ``azure.identity`` at import time. Without the SDK
the exception names still exist (as placeholders, so ``except``/``isinstance`` work) and
``HAS_AZURE`` is False; ``AzureModule`` then fails with ``missing_required_lib``.

``to_dict(model)``  SDK model (typespec or msrest generation) -> REST-shaped dict.
"""

from __future__ import annotations

import traceback

AZURE_IMPORT_ERROR = None
try:
    # re-exported: the rest of the collection imports these names from here
    from azure.core.exceptions import (  # noqa: F401 pylint: disable=unused-import
        AzureError,
        ClientAuthenticationError,
        HttpResponseError,
        ResourceNotFoundError,
        ServiceRequestError,
        ServiceResponseError,
    )
    from azure.identity import (  # noqa: F401 pylint: disable=unused-import
        AzureCliCredential,
        ClientSecretCredential,
        ManagedIdentityCredential,
    )
    HAS_AZURE = True
except ImportError:
    AZURE_IMPORT_ERROR = traceback.format_exc()
    HAS_AZURE = False

    class AzureError(Exception):  # type: ignore[no-redef]
        """Placeholder so isinstance checks work without the SDK."""

    class HttpResponseError(AzureError):  # type: ignore[no-redef]
        """Placeholder."""

    class ClientAuthenticationError(HttpResponseError):  # type: ignore[no-redef]
        """Placeholder."""

    class ResourceNotFoundError(HttpResponseError):  # type: ignore[no-redef]
        """Placeholder."""

    class ServiceRequestError(AzureError):  # type: ignore[no-redef]
        """Placeholder."""

    class ServiceResponseError(AzureError):  # type: ignore[no-redef]
        """Placeholder."""

    # never called: AzureSession refuses to start without the SDK
    AzureCliCredential = ClientSecretCredential = ManagedIdentityCredential = None


AZURE_REQUIREMENTS = ('azure-identity and azure-mgmt-compute, azure-mgmt-network, azure-mgmt-resource, azure-mgmt-authorization, '
                      'azure-mgmt-keyvault, azure-keyvault-secrets')


def to_dict(model):
    """SDK model -> REST-shaped dict (camelCase keys, read-only fields included); dicts pass through."""
    if model is None:
        return None
    if isinstance(model, dict) and not hasattr(model, 'as_dict'):
        return model
    if hasattr(model, 'serialize') and hasattr(model, '_attribute_map'):
        return model.serialize(keep_readonly=True)
    if hasattr(model, 'as_dict'):
        return model.as_dict()
    return dict(model)

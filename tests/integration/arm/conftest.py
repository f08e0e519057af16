"""Fixtures of the ARM emulator tests that drive it with the Azure SDK clients."""
from __future__ import annotations

import uuid

import pytest
from azure.core.exceptions import ResourceNotFoundError

from .armwire import Clients

LOC = "westeurope"


@pytest.fixture(scope="module")
def az(arm):
    return Clients(arm)


@pytest.fixture
def rg(request, az):
    """A fresh resource group (named after the test module), deleted afterwards. Modules that define
    their own ``rg`` (the conformance tests, over the raw wire) keep theirs."""
    name = f"{request.module.__name__.rsplit('.', 1)[-1].removeprefix('test_')[:8]}-{uuid.uuid4().hex[:8]}"
    az.resource.resource_groups.create_or_update(name, {"location": LOC})
    yield name
    try:
        az.resource.resource_groups.begin_delete(name).result()
    except ResourceNotFoundError:
        pass

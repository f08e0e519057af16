"""The one error type of the emulator: an ARM error answer ({"error": {"code", "message"}})."""
from __future__ import annotations


class ArmError(Exception):
    """Raised anywhere while handling a request; the server turns it into the ARM error body."""

    def __init__(self, status: int, code: str, message: str, *, target: str | None = None,
                 details: list | None = None, headers: dict | None = None, body: dict | None = None):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.target = target
        self.details = details
        self.headers = headers or {}
        self._body = body

    def body(self) -> dict:
        if self._body is not None:
            return self._body
        err = {"code": self.code, "message": self.message}
        if self.target:
            err["target"] = self.target
        if self.details is not None:
            err["details"] = self.details
        return {"error": err}

    def as_operation_error(self) -> dict:
        return self.body()["error"]


def not_found(resource_type: str, name: str, resource_group: str) -> ArmError:
    """ARM's generic 404 for a missing resource."""
    return ArmError(404, "ResourceNotFound",
                    f"The Resource '{resource_type}/{name}' under resource group '{resource_group}' was not found. "
                    "For more details please go to https://aka.ms/ARMResourceNotFoundFix")


def rg_not_found(resource_group: str) -> ArmError:
    return ArmError(404, "ResourceGroupNotFound", f"Resource group '{resource_group}' could not be found.")


def entity_not_found() -> ArmError:
    """Compute's 404 for scale-set VMs (as recorded from the real service)."""
    return ArmError(404, "NotFound", "The entity was not found in this Azure location.")


def invalid_parameter(message: str, target: str | None = None) -> ArmError:
    return ArmError(400, "InvalidParameter", message, target=target)


def bad_request(code: str, message: str, target: str | None = None) -> ArmError:
    return ArmError(400, code, message, target=target)

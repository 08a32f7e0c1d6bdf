"""Phoenix: deploy applications the Phoenix-server way.

Never patch a running server: build fresh ones from a golden image and a cloud-init
template, prove them healthy, move the load balancer's traffic to them, retire the old
ones, and roll back automatically when anything fails.

    import phoenix
    spec = phoenix.load_spec("phoenix.yaml")
    result = phoenix.deploy(spec)          # raises phoenix.DeployFailed on a rollback
    print(result.release, result.outcome)
"""

# Exports are imported on first use (PEP 562): a node agent or balancer process that
# imports one submodule must not pay for pydantic, httpx and jinja2 at boot.
from importlib import import_module
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "DestroyResult": "phoenix.api",
    "DrillResult": "phoenix.api",
    "Phoenix": "phoenix.session",
    "NodeStatus": "phoenix.api",
    "PlanReport": "phoenix.api",
    "RegionStatus": "phoenix.api",
    "StatusReport": "phoenix.api",
    "deploy": "phoenix.api",
    "destroy": "phoenix.api",
    "failback": "phoenix.api",
    "failover": "phoenix.api",
    "history": "phoenix.api",
    "plan": "phoenix.api",
    "rollback": "phoenix.api",
    "repave": "phoenix.api",
    "status": "phoenix.api",
    "unlock": "phoenix.api",
    "validate": "phoenix.api",
    "RegionAttempt": "phoenix.blast",
    "DeployResult": "phoenix.engine",
    "Event": "phoenix.engine",
    "DeployFailed": "phoenix.errors",
    "ExitCode": "phoenix.errors",
    "InputError": "phoenix.errors",
    "Interrupted": "phoenix.errors",
    "LockHeld": "phoenix.errors",
    "PhoenixError": "phoenix.errors",
    "RestoreFailed": "phoenix.errors",
    "SpecError": "phoenix.errors",
    "TemplateError": "phoenix.errors",
    "DeployRecord": "phoenix.records",
    "Spec": "phoenix.spec",
    "load_spec": "phoenix.spec_loader",
}

__all__ = [
    "DeployFailed",
    "DeployRecord",
    "DeployResult",
    "DestroyResult",
    "DrillResult",
    "Event",
    "ExitCode",
    "InputError",
    "Interrupted",
    "LockHeld",
    "NodeStatus",
    "Phoenix",
    "PhoenixError",
    "PlanReport",
    "RegionAttempt",
    "RegionStatus",
    "RestoreFailed",
    "Spec",
    "SpecError",
    "StatusReport",
    "TemplateError",
    "deploy",
    "destroy",
    "failback",
    "failover",
    "history",
    "load_spec",
    "plan",
    "repave",
    "rollback",
    "status",
    "unlock",
    "validate",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'phoenix' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:
    from phoenix.api import (
        DestroyResult,
        DrillResult,
        NodeStatus,
        PlanReport,
        RegionStatus,
        StatusReport,
        deploy,
        destroy,
        failback,
        failover,
        history,
        plan,
        rollback,
        status,
        unlock,
        validate,
    )
    from phoenix.blast import RegionAttempt
    from phoenix.engine import DeployResult, Event
    from phoenix.errors import (
        DeployFailed,
        ExitCode,
        InputError,
        Interrupted,
        LockHeld,
        PhoenixError,
        RestoreFailed,
        SpecError,
        TemplateError,
    )
    from phoenix.records import DeployRecord
    from phoenix.session import Phoenix
    from phoenix.spec import Spec
    from phoenix.spec_loader import load_spec

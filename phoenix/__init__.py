"""Phoenix: deploy applications the Phoenix-server way.

Never patch a running server: build fresh ones from a golden image and a cloud-init
template, prove them healthy, move the load balancer's traffic to them, retire the old
ones, and roll back automatically when anything fails.

    import phoenix
    spec = phoenix.load_spec("phoenix.yaml")
    result = phoenix.deploy(spec)          # raises phoenix.DeployFailed on a rollback
    print(result.release, result.outcome)
"""

from phoenix.api import (
    DestroyResult,
    NodeStatus,
    PlanReport,
    RegionStatus,
    StatusReport,
    deploy,
    destroy,
    history,
    plan,
    rollback,
    status,
    unlock,
    validate,
)
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
from phoenix.spec import Spec
from phoenix.spec_loader import load_spec

__all__ = [
    "DeployFailed",
    "DeployRecord",
    "DeployResult",
    "DestroyResult",
    "Event",
    "ExitCode",
    "InputError",
    "Interrupted",
    "LockHeld",
    "NodeStatus",
    "PhoenixError",
    "PlanReport",
    "RegionStatus",
    "RestoreFailed",
    "Spec",
    "SpecError",
    "StatusReport",
    "TemplateError",
    "deploy",
    "destroy",
    "history",
    "load_spec",
    "plan",
    "rollback",
    "status",
    "unlock",
    "validate",
]

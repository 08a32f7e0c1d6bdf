"""Phoenix's error hierarchy and the exit codes they map to.

Providers translate SDK exceptions into these types at the adapter boundary, so the
engine decides what to do (retry, fail fast, roll back, fail over) from the type alone
and never imports an SDK. Every error a user can hit says what went wrong, where, and
what to do next.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes shared by the CLI and a CI deploy stage (see ARCHITECTURE.md)."""

    OK = 0
    DEPLOY_FAILED = 1
    BAD_INPUT = 2
    NEEDS_PERSON = 3
    LOCKED = 4
    INTERRUPTED = 130


class PhoenixError(Exception):
    """Base of every error Phoenix raises on purpose."""

    exit_code: ExitCode = ExitCode.DEPLOY_FAILED


class OutcomeError(PhoenixError):
    """A deploy ended badly; ``result`` (a ``DeployResult``) says what was done."""

    def __init__(self, message: str, *, result: object | None = None) -> None:
        self.result = result
        super().__init__(message)


# --- bad input (exit 2): nothing has been touched -------------------------------------


class InputError(PhoenixError):
    """The user's input is wrong; fixing the input is the way forward."""

    exit_code = ExitCode.BAD_INPUT


class SpecError(InputError):
    """A spec file failed validation. ``problems`` holds one line per problem.

    Each problem reads ``file:line: field: message`` so an editor can jump to it.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class TemplateError(InputError):
    """A cloud-init template failed to render or rendered into something unusable."""

    def __init__(self, message: str, *, template: str, line: int | None = None) -> None:
        self.template = template
        self.line = line
        where = f"{template}:{line}" if line is not None else template
        super().__init__(f"{where}: {message}")


# --- provider errors: translated from SDK exceptions ----------------------------------


class ProviderError(PhoenixError):
    """A cloud API call failed. ``region`` names where, when known."""

    def __init__(self, message: str, *, region: str | None = None) -> None:
        self.region = region
        super().__init__(message)


class Transient(ProviderError):
    """Worth retrying: 5xx, 429, timeouts, connection resets, 409 while PENDING_*.

    ``retry_after`` carries the server's Retry-After hint in seconds, when it gave one.
    """

    def __init__(
        self, message: str, *, region: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, region=region)
        self.retry_after = retry_after


class Permanent(ProviderError):
    """Retrying will not help; fail fast with the provider's message."""


class QuotaExceeded(Permanent):
    """The project's quota cannot fit the request (a region-level failure)."""


class CapacityError(Permanent):
    """The region has no capacity (e.g. Nova's "No valid host was found")."""


class NotFound(Permanent):
    """The resource does not exist. Deletes treat this as success."""


class BadRequest(Permanent):
    """The provider refused the request as malformed."""


class AuthError(Permanent):
    """Credentials are missing, wrong or lack permission."""

    exit_code = ExitCode.BAD_INPUT


class UnknownResource(InputError):
    """The spec names an image, flavor, network or pool the provider does not have."""


class RegionUnavailable(ProviderError):
    """The region's API cannot be reached at all (a region-level failure)."""


# --- outcomes of a deploy ---------------------------------------------------------------


class DeployFailed(OutcomeError):
    """The deploy failed and was rolled back; the previous release keeps serving."""

    exit_code = ExitCode.DEPLOY_FAILED


class RestoreFailed(OutcomeError):
    """The deploy failed and the previous state could not be restored: needs a person."""

    exit_code = ExitCode.NEEDS_PERSON


class LockHeld(PhoenixError):
    """Another deploy of the same app holds the lock."""

    exit_code = ExitCode.LOCKED

    def __init__(self, app: str, owner: str, expires_at: str, *, hint: str | None = None
                 ) -> None:
        self.app = app
        self.owner = owner
        super().__init__(
            f"another deploy of {app!r} holds the lock (owner {owner}, expires {expires_at});"
            + (f" {hint}" if hint else " wait for it to finish, or run `phoenix unlock` if"
               " that deploy is dead")
        )


class LeaseLost(BaseException):
    """This actor's lease was taken over (it stalled past its TTL) or broken by
    ``phoenix unlock``: it must stop acting at once.

    A ``BaseException``, like ``KeyboardInterrupt``, so that no recovery code (a
    rollback, a restore, a retire, a record) catches it and touches the cloud on behalf
    of an actor that no longer holds the app: the new holder owns what happens next."""

    exit_code = ExitCode.LOCKED

    def __init__(self, app: str, taken_by: str) -> None:
        self.app = app
        self.taken_by = taken_by
        super().__init__(
            f"lost the lock on {app!r} to {taken_by}; stopped without touching anything"
            " more: that actor now owns the app (see `phoenix status`)"
        )


class Interrupted(OutcomeError):
    """The user interrupted a deploy; Phoenix made it safe before exiting."""

    exit_code = ExitCode.INTERRUPTED

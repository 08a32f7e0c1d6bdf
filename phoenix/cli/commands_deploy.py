"""The commands that change what serves: deploy, failover, failback, rollback, repave.
Each shows progress on a TTY and records what it did (``--metrics-file``, the GitHub job
summary)."""

from __future__ import annotations

import dataclasses
from typing import Annotated

import typer

from phoenix.cli.options import (
    EnvOpt,
    LogFormatOpt,
    LogLevelOpt,
    OutputOpt,
    ServingRegionOpt,
    SpecArg,
    YesOpt,
    checked_region,
    given_region,
)
from phoenix.cli.session import command_session
from phoenix.cli.terminal import confirm, progress
from phoenix.cli.text import deploy_text
from phoenix.errors import InputError


def deploy(
    ctx: typer.Context,
    spec_file: SpecArg = "phoenix.yaml",
    region: ServingRegionOpt = None,
    output: OutputOpt = None,
    log_format: LogFormatOpt = None,
    log_level: LogLevelOpt = None,
    env: EnvOpt = None,
) -> None:
    """Build the spec's release, health-gate it, move traffic, retire the old release.

    On failure the old release keeps serving (exit 1). Ctrl-C rolls back, then exits 130.
    With dns: in the spec, a region that fails as a whole (quota, no capacity, API down,
    every new node failing its health gate) is left for the next region in the spec's
    order, and the DNS record follows.
    """
    with command_session(ctx, output, log_format, log_level, env=env, changes_cloud=True,
                  records_action=True) as session:
        from phoenix import api

        spec = session.load(spec_file)
        where = given_region(spec, region)
        with progress(session, f"deploying {spec.app}"
                       + (f" to {where}" if where else "")) as on_event:
            result = api.deploy(spec, region=where, on_event=on_event)
        session.record(result)
        session.done(dataclasses.asdict(result), deploy_text(result))


def failover(
    ctx: typer.Context,
    spec_file: SpecArg = "phoenix.yaml",
    to: Annotated[
        str, typer.Option("--to", metavar="REGION", help="The region to move the app to.")
    ] = "",
    yes: YesOpt = False,
    output: OutputOpt = None,
    log_format: LogFormatOpt = None,
    log_level: LogLevelOpt = None,
    env: EnvOpt = None,
) -> None:
    """Move the app to another region: deploy the serving release there, prove it
    healthy, point DNS at it, retire the old region (when it can be reached)."""
    with command_session(ctx, output, log_format, log_level, env=env, changes_cloud=True,
                  records_action=True) as session:
        from phoenix import api

        spec = session.load(spec_file)
        if not to:
            raise InputError(
                f"--to REGION: say where to move {spec.app} ({', '.join(spec.regions)})"
            )
        checked_region(spec, to)
        confirm("failover", f"Move {spec.app} to {to}?", yes=yes)
        with progress(session, f"failing {spec.app} over to {to}") as on_event:
            result = api.failover(spec, to=to, on_event=on_event)
        session.record(result)
        session.done(dataclasses.asdict(result), deploy_text(result))


def failback(
    ctx: typer.Context,
    spec_file: SpecArg = "phoenix.yaml",
    yes: YesOpt = False,
    output: OutputOpt = None,
    log_format: LogFormatOpt = None,
    log_level: LogLevelOpt = None,
    env: EnvOpt = None,
) -> None:
    """Move the app back to the primary region (the spec's first), health-gated."""
    with command_session(ctx, output, log_format, log_level, env=env, changes_cloud=True,
                  records_action=True) as session:
        from phoenix import api

        spec = session.load(spec_file)
        primary = spec.regions[0]
        confirm("failback", f"Move {spec.app} back to {primary}?", yes=yes)
        with progress(session, f"failing {spec.app} back to {primary}") as on_event:
            result = api.failback(spec, on_event=on_event)
        session.record(result)
        session.done(dataclasses.asdict(result), deploy_text(result))


def rollback(
    ctx: typer.Context,
    spec_file: SpecArg = "phoenix.yaml",
    to: Annotated[
        str | None,
        typer.Option("--to", metavar="RELEASE", help="Release to restore (default: the"
                     " previous good one; `phoenix history` lists them)."),
    ] = None,
    region: ServingRegionOpt = None,
    yes: YesOpt = False,
    output: OutputOpt = None,
    log_format: LogFormatOpt = None,
    log_level: LogLevelOpt = None,
    env: EnvOpt = None,
) -> None:
    """Put the previous good release (or --to RELEASE) back in service."""
    with command_session(ctx, output, log_format, log_level, env=env, changes_cloud=True,
                  records_action=True) as session:
        from phoenix import api

        spec = session.load(spec_file)
        where = given_region(spec, region)
        target = to or "the previous good release"
        place = f" in {where}" if where else ""
        confirm("rollback", f"Roll {spec.app}{place} back to {target}?", yes=yes)
        with progress(session, f"rolling {spec.app} back{place}") as on_event:
            result = api.rollback(spec, to_release=to, region=where, on_event=on_event)
        session.record(result)
        session.done(dataclasses.asdict(result), deploy_text(result))


def repave(
    ctx: typer.Context,
    spec_file: SpecArg = "phoenix.yaml",
    region: ServingRegionOpt = None,
    yes: YesOpt = False,
    output: OutputOpt = None,
    log_format: LogFormatOpt = None,
    log_level: LogLevelOpt = None,
    env: EnvOpt = None,
) -> None:
    """Replace every node of the serving release with a fresh one from the same image
    (rolling, health-gated, rolled back on failure): rebuild everything now, e.g. after
    a suspected compromise."""
    with command_session(ctx, output, log_format, log_level, env=env, changes_cloud=True,
                  records_action=True) as session:
        from phoenix import api

        spec = session.load(spec_file)
        where = given_region(spec, region)
        place = f" in {where}" if where else ""
        confirm("repave", f"Replace every node of {spec.app}{place} with a fresh one?",
                 yes=yes)
        with progress(session, f"repaving {spec.app}{place}") as on_event:
            result = api.repave(spec, region=where, on_event=on_event)
        session.record(result)
        session.done(dataclasses.asdict(result), deploy_text(result))

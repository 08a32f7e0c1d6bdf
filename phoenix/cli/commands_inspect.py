"""The commands that change nothing: validate, render, plan, status, history, schema."""

from __future__ import annotations

import dataclasses
import json
from typing import Annotated

import typer

from phoenix import github
from phoenix.cli.options import (
    EnvOpt,
    LogFormatOpt,
    LogLevelOpt,
    OutputOpt,
    RegionOpt,
    ServingRegionOpt,
    SpecArg,
    checked_region,
    given_region,
)
from phoenix.cli.session import command_session
from phoenix.cli.text import history_text, plan_text, status_text
from phoenix.errors import InputError


def validate(
    ctx: typer.Context,
    spec_file: SpecArg = "phoenix.yaml",
    output: OutputOpt = None,
    log_format: LogFormatOpt = None,
    log_level: LogLevelOpt = None,
    env: EnvOpt = None,
) -> None:
    """Check the spec and render the template for every region and node; touches no cloud.

    Without --env, every environment the spec defines is checked as well."""
    with command_session(ctx, output, log_format, log_level, env=env) as session:
        from phoenix import api

        spec = session.load(spec_file)
        api.validate(spec)
        checked = [spec.environment] if spec.environment else [""]
        if spec.environment is None:
            for name in spec.environments:
                api.validate(session.load_environment(spec_file, name))
                checked.append(name)
        session.summarize(lambda: github.validate_summary(spec_file, spec, mask=session.mask))
        session.done(
            {
                "ok": True,
                "app": spec.app,
                "count": spec.count,
                "regions": list(spec.regions),
                "template": str(spec.template_path),
                "secret_vars": sorted(spec.secret_names),
                "environment": spec.environment,
                "environments_checked": [name for name in checked if name],
            },
            f"ok: {spec.app}, {spec.count} node(s), regions {', '.join(spec.regions)}"
            + (f"; environments {', '.join(checked[1:])} ok" if len(checked) > 1 else ""),
        )


def render(
    ctx: typer.Context,
    spec_file: SpecArg = "phoenix.yaml",
    index: Annotated[int, typer.Option("--index", "-i", help="Node index.", min=0)] = 0,
    region: RegionOpt = None,
    show_secrets: Annotated[
        bool, typer.Option("--show-secrets", help="Print secret var values instead of ***.")
    ] = False,
    output: OutputOpt = None,
    log_format: LogFormatOpt = None,
    log_level: LogLevelOpt = None,
    env: EnvOpt = None,
) -> None:
    """Print the user-data one node would boot with (release shown as RELEASE)."""
    with command_session(ctx, output, log_format, log_level, env=env) as session:
        from phoenix.release import PLACEHOLDER_RELEASE
        from phoenix.validation import placeholder_user_data

        spec = session.load(spec_file)
        where = checked_region(spec, region)
        if index >= spec.count:
            raise InputError(
                f"--index {index}: the spec has count {spec.count}, so indexes are"
                f" 0..{spec.count - 1}"
            )
        text = placeholder_user_data(spec, where, index)
        data = {"app": spec.app, "region": where, "index": index,
                "release": PLACEHOLDER_RELEASE, "user_data": text}
        # The template's own final newline ends the output; echo adds none of its own.
        session.done(data, text.removesuffix("\n"), masked=not show_secrets)


def plan(
    ctx: typer.Context,
    spec_file: SpecArg = "phoenix.yaml",
    region: ServingRegionOpt = None,
    output: OutputOpt = None,
    log_format: LogFormatOpt = None,
    log_level: LogLevelOpt = None,
    env: EnvOpt = None,
) -> None:
    """Show which release the spec means and what deploy would do first; changes nothing."""
    with command_session(ctx, output, log_format, log_level, env=env) as session:
        from phoenix import api

        spec = session.load(spec_file)
        report = api.plan(spec, region=given_region(spec, region))
        session.summarize(lambda: github.plan_summary(report, mask=session.mask))
        session.done(dataclasses.asdict(report), plan_text(report))


def status(
    ctx: typer.Context,
    spec_file: SpecArg = "phoenix.yaml",
    no_health: Annotated[
        bool, typer.Option("--no-health", help="Skip health checks (faster).")
    ] = False,
    output: OutputOpt = None,
    log_format: LogFormatOpt = None,
    log_level: LogLevelOpt = None,
    env: EnvOpt = None,
) -> None:
    """Show what runs where: nodes, health, pool membership, DNS, the lock, problems."""
    with command_session(ctx, output, log_format, log_level, env=env) as session:
        from phoenix import api

        spec = session.load(spec_file)
        report = api.status(spec, check_health=not no_health)
        session.done(dataclasses.asdict(report), status_text(spec, report, not no_health))


def history(
    ctx: typer.Context,
    spec_file: SpecArg = "phoenix.yaml",
    output: OutputOpt = None,
    log_format: LogFormatOpt = None,
    log_level: LogLevelOpt = None,
    env: EnvOpt = None,
) -> None:
    """List every deploy, rollback and failover of the app, oldest first."""
    with command_session(ctx, output, log_format, log_level, env=env) as session:
        from phoenix import api

        spec = session.load(spec_file)
        records = api.history(spec)
        session.done(
            {"app": spec.app, "records": [dataclasses.asdict(r) for r in records]},
            history_text(spec.app, records),
        )


def schema() -> None:
    """Print the JSON Schema of phoenix.yaml (for editors and linters)."""
    from phoenix.spec_loader import spec_json_schema

    typer.echo(json.dumps(spec_json_schema(), indent=2))

"""The operator's commands besides deploys: destroy, unlock, ``image list``/``image
import`` (the ``image`` group) and ``drill outage``/``drill recover`` (the ``drill``
group, the local provider's failover drills)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from phoenix.cli.options import (
    EnvOpt,
    LogFormat,
    LogFormatOpt,
    LogLevel,
    LogLevelOpt,
    OutputFormat,
    OutputOpt,
    RegionOpt,
    SpecArg,
    YesOpt,
    checked_region,
)
from phoenix.cli.session import command_session
from phoenix.cli.terminal import confirm
from phoenix.cli.text import destroy_text, table
from phoenix.errors import InputError


def destroy(
    ctx: typer.Context,
    spec_file: SpecArg = "phoenix.yaml",
    yes: YesOpt = False,
    purge_records: Annotated[
        bool,
        typer.Option("--purge-records", help="Also delete release records and deploy history."),
    ] = False,
    output: OutputOpt = None,
    log_format: LogFormatOpt = None,
    log_level: LogLevelOpt = None,
    env: EnvOpt = None,
) -> None:
    """Take the app out of every region: pool members removed, servers deleted."""
    with command_session(ctx, output, log_format, log_level, env=env,
                         changes_cloud=True) as session:
        from phoenix import api

        spec = session.load(spec_file)
        what = "every server and pool member"
        if purge_records:
            what += ", and its release records and history"
        confirm("destroy", f"Destroy {spec.app} in {', '.join(spec.regions)}: {what}?", yes=yes)
        result = api.destroy(spec, purge_records=purge_records)
        session.done(dataclasses.asdict(result), destroy_text(result))


def unlock(
    ctx: typer.Context,
    spec_file: SpecArg = "phoenix.yaml",
    yes: YesOpt = False,
    force: Annotated[bool, typer.Option(
        "--force", help="break it even if the holder looks alive (it stops at its next poll)"
    )] = False,
    output: OutputOpt = None,
    log_format: LogFormatOpt = None,
    log_level: LogLevelOpt = None,
    env: EnvOpt = None,
) -> None:
    """Break the app's deploy lock, left by a deploy that died on another machine.

    Refuses a holder that looks alive (a process on this host that runs, or a lease
    elsewhere that has not expired) unless --force."""
    with command_session(ctx, output, log_format, log_level, env=env,
                         changes_cloud=True) as session:
        from phoenix import api

        spec = session.load(spec_file)
        confirm(
            "unlock",
            f"Break the deploy lock of {spec.app}? Only if the deploy holding it is dead"
            + (" (--force: even if it looks alive)." if force else "."),
            yes=yes,
        )
        holder = api.unlock(spec, force=force)
        session.done(
            {"app": spec.app, "removed_holder": holder},
            f"unlocked {spec.app}: broke the lock held by {holder}" if holder
            else f"{spec.app} was not locked; nothing to do",
        )


image_app = typer.Typer(help="Golden images: list them, or import a directory (local).")


@image_app.command("list")
def image_list(
    ctx: typer.Context,
    spec_file: SpecArg = "phoenix.yaml",
    region: RegionOpt = None,
    output: OutputOpt = None,
    log_format: LogFormatOpt = None,
    log_level: LogLevelOpt = None,
    env: EnvOpt = None,
) -> None:
    """List the provider's images with their digest and creation time, newest first."""
    with command_session(ctx, output, log_format, log_level, env=env) as session:
        from phoenix import api

        spec = session.load(spec_file)
        found = api.images(spec, region=region)
        rows = [
            [i.id, i.name, i.properties.get("digest", "-"),
             i.created_at.isoformat(timespec="seconds") if i.created_at else "-"]
            for i in found
        ]
        session.done(
            {"images": [
                {"id": i.id, "name": i.name, "digest": i.properties.get("digest"),
                 "created_at": i.created_at.isoformat() if i.created_at else None}
                for i in found
            ]},
            table(["ID", "NAME", "DIGEST", "CREATED"], rows) if rows else ["no images"],
        )


@image_app.command("import")
def image_import(
    ctx: typer.Context,
    source: Annotated[Path, typer.Argument(help="the directory to snapshot")],
    spec_file: SpecArg = "phoenix.yaml",
    name: Annotated[str | None, typer.Option(help="image name (default: the dir's)")] = None,
    output: OutputOpt = None,
    log_format: LogFormatOpt = None,
    log_level: LogLevelOpt = None,
    env: EnvOpt = None,
) -> None:
    """Import a directory as an immutable, content-addressed image (local provider)."""
    with command_session(ctx, output, log_format, log_level, env=env) as session:
        from phoenix import api

        spec = session.load(spec_file)
        image = api.import_image(spec, source, name=name)
        digest = image.properties.get("digest", "-")
        session.done(
            {"id": image.id, "name": image.name, "digest": digest,
             "created_at": image.created_at.isoformat() if image.created_at else None},
            f"{image.id}  {image.name}  sha256:{digest}",
        )


drill_app = typer.Typer(help="Failover drills on the local provider: cut a region's power.")


DrillRegionOpt = Annotated[str, typer.Option("--region", "-r", help="The local region.")]


@drill_app.command("outage")
def drill_outage(
    ctx: typer.Context,
    spec_file: SpecArg = "phoenix.yaml",
    region: DrillRegionOpt = "",
    output: OutputOpt = None,
    log_format: LogFormatOpt = None,
    log_level: LogLevelOpt = None,
    env: EnvOpt = None,
) -> None:
    """SIGKILL a local region's load balancers and nodes; its API answers "unavailable"
    until `phoenix drill recover`."""
    _drill(ctx, spec_file, region, output, log_format, log_level, env, end=False)


@drill_app.command("recover")
def drill_recover(
    ctx: typer.Context,
    spec_file: SpecArg = "phoenix.yaml",
    region: DrillRegionOpt = "",
    output: OutputOpt = None,
    log_format: LogFormatOpt = None,
    log_level: LogLevelOpt = None,
    env: EnvOpt = None,
) -> None:
    """End a drill's outage: the region answers again (its dead nodes read ERROR)."""
    _drill(ctx, spec_file, region, output, log_format, log_level, env, end=True)


def _drill(
    ctx: typer.Context, spec_file: str, region: str, output: OutputFormat | None,
    log_format: LogFormat | None, log_level: LogLevel | None, env: str | None, *,
    end: bool,
) -> None:
    with command_session(ctx, output, log_format, log_level, env=env,
                         changes_cloud=True) as session:
        from phoenix import api

        spec = session.load(spec_file)
        if not region:
            raise InputError(f"--region REGION: say which region ({', '.join(spec.regions)})")
        result = api.drill(spec, region=checked_region(spec, region), end=end)
        if not end:
            text = (f"{result.region} is down: {len(result.killed_pids)} process(es) killed;"
                    " its API answers 'unavailable' until `phoenix drill recover`")
        elif result.changed:
            text = f"{result.region} is back"
        else:
            text = f"{result.region} was not down; nothing to do"
        session.done(dataclasses.asdict(result), text)

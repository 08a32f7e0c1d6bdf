"""The operator's commands besides deploys: destroy, unlock, ``image list``/``image
import`` (the ``image`` group) and ``drill outage``/``drill recover`` (the ``drill``
group, the local provider's failover drills)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

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

if TYPE_CHECKING:
    from phoenix.image_retention import ImageUse


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
    """List the provider's images in a region, newest first: digest, age, provenance
    properties, and the recorded releases (of every environment) that use each."""
    with command_session(ctx, output, log_format, log_level, env=env) as session:
        from phoenix import api

        spec = session.load(spec_file)
        where = checked_region(spec, region)
        found = api.image_inventory(spec, region=where, every_image=True)
        rows = [
            [use.image.id, use.image.name, use.image.properties.get("digest", "-"),
             _created(use), _age(use.age_seconds), ", ".join(use.releases) or "-"]
            for use in found
        ]
        session.done(
            {"region": where, "images": [_image_json(use) for use in found]},
            table(["ID", "NAME", "DIGEST", "CREATED", "AGE", "USED BY"], rows) if rows
            else [f"no images in {where}"],
        )


@image_app.command("prune")
def image_prune(
    ctx: typer.Context,
    spec_file: SpecArg = "phoenix.yaml",
    keep: Annotated[int, typer.Option(
        "--keep", min=1, help="How many of the newest golden images to keep.")] = 3,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Say what would be deleted; delete nothing.")] = False,
    region: RegionOpt = None,
    yes: YesOpt = False,
    output: OutputOpt = None,
    log_format: LogFormatOpt = None,
    log_level: LogLevelOpt = None,
    env: EnvOpt = None,
) -> None:
    """Delete the app's old golden images (those its image: picks from), keeping the
    --keep newest and every image a recorded release of any environment could roll back
    to. Every region of the spec unless --region."""
    with command_session(ctx, output, log_format, log_level, env=env,
                         changes_cloud=not dry_run) as session:
        from phoenix import api

        spec = session.load(spec_file)
        where = None if region is None else checked_region(spec, region)
        if not dry_run:
            confirm("image prune", f"Delete the golden images of {spec.app} older than the"
                    f" {keep} newest that no recorded release uses?", yes=yes)
        choices = api.prune_images(spec, keep=keep, dry_run=dry_run, region=where)
        doomed = [c for c in choices if c.delete]
        verb = "would delete" if dry_run else "deleted"
        rows = [["delete" if c.delete else "keep", c.use.region, c.use.image.id,
                 c.use.image.name, _age(c.use.age_seconds), c.why] for c in choices]
        session.done(
            {"dry_run": dry_run, "keep": keep,
             "deleted" if not dry_run else "would_delete":
                 [{"region": c.use.region, "id": c.use.image.id} for c in doomed],
             "images": [{**_image_json(c.use), "delete": c.delete, "why": c.why}
                        for c in choices]},
            [f"{verb} {len(doomed)} of {len(choices)} image(s)",
             *(table(["ACTION", "REGION", "ID", "NAME", "AGE", "WHY"], rows) if rows else [])],
        )


def _image_json(use: ImageUse) -> dict[str, object]:
    image = use.image
    return {"id": image.id, "name": image.name, "region": use.region,
            "digest": image.properties.get("digest"),
            "created_at": image.created_at.isoformat() if image.created_at else None,
            "age_seconds": use.age_seconds, "properties": dict(image.properties),
            "used_by": list(use.releases), "golden": use.golden}


def _created(use: ImageUse) -> str:
    created = use.image.created_at
    return created.isoformat(timespec="seconds") if created else "-"


def _age(seconds: float | None) -> str:
    """``3d4h``-style: enough to tell a week-old image from a year-old one."""
    if seconds is None:
        return "-"
    minutes, _ = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d{hours}h"
    return f"{hours}h{minutes}m" if hours else f"{minutes}m"


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

"""``phoenix watch``: keep the apps' serving releases healthy between deploys, round after
round, with /metrics, /healthz and a status page served meanwhile."""

from __future__ import annotations

import dataclasses
import signal
import threading
from typing import TYPE_CHECKING, Annotated

import typer

from phoenix.cli.options import EnvOpt, LogFormatOpt, LogLevelOpt, OutputOpt
from phoenix.cli.session import command_session
from phoenix.errors import InputError

if TYPE_CHECKING:
    from phoenix import watch as watch_module


def watch(
    ctx: typer.Context,
    spec_files: Annotated[
        list[str],
        typer.Argument(metavar="SPEC...", help="Specs (or folders of specs) of the apps to"
                       " keep healthy."),
    ],
    interval: Annotated[
        str, typer.Option("--interval", help="Time between rounds (e.g. 10s, 1m).")
    ] = "10s",
    once: Annotated[
        bool, typer.Option("--once", help="One round, then exit (cron, tests).")
    ] = False,
    listen: Annotated[
        str, typer.Option("--listen", metavar="HOST:PORT",
                          help="Serve /metrics and /healthz here (loopback by default;"
                          " 'off': not at all).")
    ] = "127.0.0.1:9464",
    output: OutputOpt = None,
    log_format: LogFormatOpt = None,
    log_level: LogLevelOpt = None,
    env: EnvOpt = None,
) -> None:
    """Keep the apps' serving releases healthy between deploys: replace sick or vanished
    nodes, repave nodes older than max_node_age, open the circuit when too much of a
    fleet is sick. Never deploys a newer spec; waits while a deploy holds the lease."""
    with command_session(ctx, output, log_format, log_level, env=env,
                         changes_cloud=True) as session:
        from phoenix import watch as watch_module
        from phoenix.metrics import Endpoints
        from phoenix.spec_types import parse_duration

        specs = session.load_many(spec_files)
        try:
            seconds = parse_duration(interval)
        except ValueError as exc:
            raise InputError(f"--interval {interval}: {exc}") from None
        if not 0.1 <= seconds <= 86400:
            raise InputError(f"--interval {interval}: use 100ms to 1d")

        def show(reports: list[watch_module.AppReport]) -> None:
            for report in reports:
                if session.json:
                    session.emit_line(dataclasses.asdict(report))
                else:
                    acted = f" [{report.action}: {report.outcome}]" if report.action else ""
                    session.out(f"{report.at} {report.app} {report.region} {report.state}"
                                f"{acted}: {report.detail}")

        address = None if listen == "off" else _host_port(listen)
        with watch_module.Watcher(specs) as watcher:
            if once:
                show(watcher.round())
                return
            endpoints = None
            if address is not None:
                try:
                    endpoints = Endpoints(*address, watcher.metrics,
                                          lambda: watcher.alive(seconds), watcher.page)
                except OSError as exc:
                    raise InputError(f"--listen {listen}: {exc.strerror or exc}") from None
                endpoints.start()
                host, port = endpoints.address
                session.err(f"watch: metrics at http://{host}:{port}/metrics, status page"
                            f" at http://{host}:{port}/")
            stop = threading.Event()
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: stop.set())
            try:
                watcher.run(interval=seconds, stop=stop, on_round=show)
            finally:
                if endpoints is not None:
                    endpoints.stop()


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise InputError(f"--listen {text}: use HOST:PORT, e.g. 127.0.0.1:9464, or off")
    return host.strip("[]"), int(port)

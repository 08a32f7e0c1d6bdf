"""The supervisor process: ``python -m phoenix.providers.local.supervisor_process``.

Its loop and the functions that start and stop it are in ``supervisor``; this module is
what runs in the detached process. It is apart because it makes balancers (HAProxy, the
built-in proxy), and those call ``supervisor`` to start their own supervisor: kept in
one module, the two would import each other.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from phoenix import errors
from phoenix.files import atomic_write, try_lock
from phoenix.providers.local.balancer import Balancer, BalancerConfig, read_config
from phoenix.providers.local.supervisor import (
    KINDS,
    LOCK_FILE,
    LOCK_WAIT,
    MODULE,
    PID_FILE,
    Supervisor,
    read_pid,
)

__all__ = ["main", "make_balancer"]

log = logging.getLogger("phoenix.providers.local.supervisor")


def make_balancer(kind: str, config: BalancerConfig) -> Balancer:
    """The balancer of ``kind`` for a config read back from the pool directory."""
    if kind == "haproxy":
        from phoenix.providers.local.haproxy import HaproxyBalancer

        return HaproxyBalancer(config)
    from phoenix.providers.local.proxy import BuiltinBalancer

    return BuiltinBalancer(config)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m phoenix.providers.local.supervisor <pool_dir> --kind K [--hold F]``."""
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}")
    parser.add_argument("pool_dir", type=Path)
    parser.add_argument("--kind", choices=KINDS, required=True)
    parser.add_argument("--hold", type=Path, default=None,
                        help="while this file exists, leave the balancer down")
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO,
        format="%(asctime)s %(levelname)s supervisor[%(process)d] %(message)s",
    )
    pool_dir: Path = args.pool_dir.resolve()
    try:
        lock_fd = try_lock(pool_dir / LOCK_FILE, wait=LOCK_WAIT)
    except OSError as exc:
        log.error("cannot lock %s: %s; exiting", pool_dir / LOCK_FILE, exc)
        return 1
    if lock_fd is None:
        log.info("another supervisor holds %s; exiting", pool_dir / LOCK_FILE)
        return 0
    try:
        atomic_write(pool_dir / PID_FILE, f"{os.getpid()}\n", parents=True)
        try:
            config = read_config(pool_dir)
        except errors.InputError as exc:
            log.error("cannot supervise: %s", exc)
            return int(errors.ExitCode.BAD_INPUT)
        supervisor = Supervisor(
            make_balancer(args.kind, config),
            hold_file=args.hold,
            reload=lambda: make_balancer(args.kind, read_config(pool_dir)),
        )

        def on_signal(signum: int, frame: FrameType | None) -> None:
            supervisor.stopping = True

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        return supervisor.run()
    finally:
        with contextlib.suppress(OSError):
            if read_pid(pool_dir / PID_FILE) == os.getpid():
                (pool_dir / PID_FILE).unlink()
        os.close(lock_fd)


if __name__ == "__main__":
    sys.exit(main())

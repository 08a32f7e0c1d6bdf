"""Wall time of the CLI's start-up: `phoenix --version`, `--help`, `validate` (issue 15).

Each command runs N times as a fresh process (the installed ``phoenix`` console script
when it sits next to this interpreter, else ``python -m phoenix``); the table shows the
median, the fastest and the slowest run. Goals: --version and --help < 0.3 s, validate
of the example < 0.5 s, on an idle machine.

Run: ``python bench/bench_cli_startup.py --runs 15``. Measured on a 2-core machine
(medians of 11 runs; bare ``python -c pass`` 17 ms): before the CLI imported lazily
--version 355 ms, --help 400 ms, validate 370 ms; after, 84 ms, 145 ms and 360 ms.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "hello" / "phoenix.yaml"
GOALS = {"--version": 0.3, "--help": 0.3, "validate": 0.5}


def phoenix_command() -> list[str]:
    """The ``phoenix`` script of this interpreter's environment, else ``python -m phoenix``."""
    script = Path(sys.executable).with_name("phoenix")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "phoenix"]


def time_runs(argv: list[str], runs: int) -> list[float]:
    """Wall seconds of ``runs`` fresh processes of ``argv``; a failing run is an error."""
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(argv, cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, check=False)
        seconds.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} exited {done.returncode}:"
                             f" {done.stderr.decode(errors='replace')}")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15, help="runs per command (default 15)")
    parser.add_argument("--spec", type=Path, default=EXAMPLE, help="the spec to validate")
    parser.add_argument("--phoenix", metavar="COMMAND",
                        help="the command to time instead of the installed script, e.g."
                        " 'python /tmp/old/run_cli.py' to compare with another version")
    args = parser.parse_args()
    phoenix = shlex.split(args.phoenix) if args.phoenix else phoenix_command()
    commands = {
        "--version": [*phoenix, "--version"],
        "--help": [*phoenix, "--help"],
        "validate": [*phoenix, "validate", str(args.spec)],
    }
    time_runs([sys.executable, "-c", "pass"], 3)  # warm the page cache first
    baseline = statistics.median(time_runs([sys.executable, "-c", "pass"], args.runs))
    print(f"{' '.join(phoenix)}, {args.runs} runs each; bare `python -c pass`:"
          f" {baseline * 1000:.0f} ms")
    print(f"{'command':<12}{'median':>10}{'min':>10}{'max':>10}{'goal':>10}  ok")
    failed = False
    for name, argv in commands.items():
        seconds = time_runs(argv, args.runs)
        median = statistics.median(seconds)
        ok = median < GOALS[name]
        failed |= not ok
        print(f"{name:<12}{median * 1000:>8.0f}ms{min(seconds) * 1000:>8.0f}ms"
              f"{max(seconds) * 1000:>8.0f}ms{GOALS[name] * 1000:>8.0f}ms  {'yes' if ok else 'NO'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

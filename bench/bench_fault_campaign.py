"""The long fault campaign (issue 11): random faults, kill -9 and reruns on the in-memory
cloud, every deploy checked against the serving invariants (``tests/e2e/campaign.py``).

Run: ``python bench/bench_fault_campaign.py --deploys 2000 --seed 1``. It prints deploys,
crashes, reruns, exit codes by count and the violations by class, each with a command
that replays one scenario showing it: ``--seed S --index I --verbose`` runs scenario I
alone and prints its transcript (faults, crash points, every deploy's outcome).
Exits 1 when there is a violation.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# The campaign lives with the tests (it uses their harness); run from anywhere.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.campaign import ScenarioReport, run_campaign


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deploys", type=int, default=2000,
                        help="run scenarios until this many deploys (default 2000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--index", type=int, default=None,
                        help="replay this one scenario of the seed")
    parser.add_argument("--start", type=int, default=0, help="first scenario index")
    parser.add_argument("--verbose", action="store_true",
                        help="print every scenario's transcript (with --index: that one)")
    args = parser.parse_args()

    def show(report: ScenarioReport) -> None:
        if args.verbose or args.index is not None:
            print("\n".join(report.transcript))
            print()
        elif report.violation is not None:
            print(f"scenario {report.index}: {report.violation.kind}", flush=True)

    if args.index is not None:
        summary = run_campaign(args.seed, scenarios=1, start=args.index, on_report=show)
    else:
        summary = run_campaign(args.seed, deploys=args.deploys, start=args.start,
                               on_report=show)
    print(summary.render())
    return 1 if summary.violation_count else 0


if __name__ == "__main__":
    sys.exit(main())

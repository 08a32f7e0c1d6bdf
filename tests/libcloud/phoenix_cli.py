"""Phoenix's CLI with the moto shims applied, for end-to-end tests in a real subprocess.

    export PHOENIX_MOTO_ENDPOINT=http://127.0.0.1:PORT
    python tests/libcloud/phoenix_cli.py deploy spec.yaml
    python -m tests.libcloud.phoenix_cli status spec.yaml    # from the repository root

``PHOENIX_MOTO_ENDPOINT`` is required (``MotoServer.environ()`` gives it, with fake AWS
credentials): it is where the shims send the ELB driver, which takes no host/port. The
other drivers are pointed at moto by the spec's ``args`` (``MotoServer.libcloud_args()``).
Everything after the shims is the real ``phoenix.cli.main`` (exit codes, signals, output).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `tests` importable from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.libcloud import shims


def main() -> None:
    endpoint = os.environ.get(shims.ENDPOINT_ENV)
    if not endpoint:
        sys.exit(f"phoenix_cli.py: set {shims.ENDPOINT_ENV} to the moto server's URL")
    shims.apply(endpoint=endpoint)
    from phoenix.cli import main as phoenix_main

    phoenix_main()


if __name__ == "__main__":
    main()

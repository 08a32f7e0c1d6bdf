"""The hello example's pre_terminate hook: save a node's data before Phoenix deletes it.

Phoenix runs it from the spec's folder, on the deploying machine, with the node in
PHOENIX_NODE_NAME and PHOENIX_NODE_ADDRESS (and every fact as JSON on stdin). It fetches
the node's visits log (GET /data) into backups/<node>/visits.log beside the spec, written
to a temporary file first so a backup is never half a file. A node that does not answer
fails the hook (exit 1): the spec says what that means (on_failure).

    python3 hooks/backup.py --port 8081
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.request
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="the app's port on the node")
    parser.add_argument("--into", default="backups", help="folder for the backups")
    args = parser.parse_args()
    node = os.environ["PHOENIX_NODE_NAME"]
    address = os.environ["PHOENIX_NODE_ADDRESS"]
    url = f"http://{address}:{args.port}/data"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            data = response.read()
    except OSError as exc:
        print(f"could not fetch {url}: {exc}", file=sys.stderr)
        return 1
    folder = Path(args.into) / node
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / "visits.log.partial"
    partial.write_bytes(data)
    partial.replace(folder / "visits.log")
    print(f"backed up {len(data.splitlines())} visit(s) of {node} to {folder}/visits.log")
    return 0


if __name__ == "__main__":
    sys.exit(main())

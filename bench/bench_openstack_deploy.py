"""Time and API requests of CLI deploys against the real OpenStack harness.

Run: ``python bench/bench_openstack_deploy.py [--count 3]``. It brings the harness up (or
reuses a running one; ``tests/openstack/harness.py``), lists the loopback Swift/Designate
fake in its catalog, makes a load balancer, then runs ``phoenix deploy`` from the CLI
exactly as a user would: a blue-green deploy of ``--count`` servers, a rolling deploy of a
second image, and ``destroy``. For each it prints the wall time and the HTTP requests
Phoenix made, per service, counted from keystoneauth's request log (``--log-level
debug``). Everything runs on 127.0.0.1 and is removed at the end; the harness is stopped
only if this run started it.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.openstack import harness  # noqa: E402
from tests.openstack.fake_object_dns import (  # noqa: E402
    FakeObjectDns,
    KeystoneTokens,
    listed_in_catalog,
)

SPEC = """\
app: {app}
provider: {{name: openstack, cloud: phoenix-harness}}
regions: [{region}]
image: {{name: {image}}}
flavor: m1.small
network: private
count: {count}
template: t.yaml.j2
health: {{mode: provider, interval: 1s, timeout: 0.5s, healthy_threshold: 1, deadline: 120s}}
rollout: {{strategy: {strategy}, max_surge: 1, max_unavailable: 0, drain_timeout: 3s}}
load_balancer: {{pool: {pool}, member_port: 8080}}
"""

# keystoneauth quotes a URL with a query string, and Phoenix's log escapes the quote.
REQUEST_LINE = re.compile(
    r'REQ: curl -g -i (?:--\S+ )*-X (\w+) (?:\\?")?http://127\.0\.0\.1:(\d+)(\S*)')


def service_of(port: int, fake_port: int) -> str:
    if port == fake_port:
        return "swift/designate (fake)"
    names = {p: name for name, p in harness.PORTS.items()}
    return names.get(port, f"port {port}")


def run_phoenix(workdir: Path, fake_port: int, *args: str) -> tuple[float, dict[str, int], str]:
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "phoenix", "--log-level", "debug", "--output", "json", *args,
         "phoenix.yaml"],
        cwd=workdir, capture_output=True, text=True, timeout=900, check=False,
    )
    elapsed = time.monotonic() - start
    if done.returncode != 0:
        raise SystemExit(f"phoenix {' '.join(args)} failed:\n{done.stderr[-4000:]}")
    counts: collections.Counter[str] = collections.Counter()
    for match in REQUEST_LINE.finditer(done.stderr):
        counts[service_of(int(match.group(2)), fake_port)] += 1
    outcome = json.loads(done.stdout).get("outcome", "") if done.stdout.strip() else ""
    return elapsed, dict(counts), outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=3)
    options = parser.parse_args()

    import openstack

    info = harness.start()
    os.environ["OS_CLIENT_CONFIG_FILE"] = str(info.clouds_yaml)
    admin = openstack.connect(cloud="phoenix-harness-admin", region_name=harness.REGION)
    conn = openstack.connect(cloud="phoenix-harness", region_name=harness.REGION)
    fake = FakeObjectDns(token_validator=KeystoneTokens(admin.session, harness.KEYSTONE_URL))
    app = f"bench{uuid.uuid4().hex[:6]}"
    image_v2 = None
    try:
        with fake, listed_in_catalog(admin, fake, harness.REGION), \
                harness.octavia_pool(conn, app), tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            image_v2 = conn.image.create_image(
                name=f"golden-{app}", data=b"v2", disk_format="raw", container_format="bare",
                allow_duplicates=True,
            )
            (workdir / "t.yaml.j2").write_text("#cloud-config\n{}\n")

            def write(image: str, strategy: str) -> None:
                (workdir / "phoenix.yaml").write_text(SPEC.format(
                    app=app, region=harness.REGION, image=image, count=options.count,
                    strategy=strategy, pool=app,
                ))

            rows = []
            write("golden", "blue-green")
            rows.append((f"deploy, blue-green, {options.count} servers",
                         *run_phoenix(workdir, fake.port, "deploy")))
            write(f"golden-{app}", "rolling")
            rows.append((f"deploy, rolling to a 2nd image, {options.count} servers",
                         *run_phoenix(workdir, fake.port, "deploy")))
            rows.append(("destroy", *run_phoenix(workdir, fake.port, "destroy", "--yes")))

            print(f"\n{'operation':44s} {'wall':>7s} {'requests':>9s}  per service")
            for name, elapsed, counts, _outcome in rows:
                detail = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
                print(f"{name:44s} {elapsed:6.1f}s {sum(counts.values()):9d}  {detail}")
    finally:
        if image_v2 is not None:
            conn.image.delete_image(image_v2, ignore_missing=True)
        conn.close()
        admin.close()
        if info.started:
            harness.stop()


if __name__ == "__main__":
    main()

"""Phoenix and its peer, a plain Ansible playbook, doing the same blue-green redeploy on
the real OpenStack harness: wall time and API requests side by side.

Run: ``python bench/bench_peers.py [--counts 6 20] [--repeat 1] [--keep-logs DIR]``. It makes
the peer's virtualenv if missing (``~/.cache/phoenix-bench/ansible-venv``, or
``$PHOENIX_BENCH_ANSIBLE_VENV``: ansible from ``bench/peers/requirements.txt`` plus the
openstacksdk version of Phoenix's own venv, and the two-line patch
``bench/peers/openstack-cloud-2.5.0-sdk-version.patch`` that lets openstack.cloud 2.5.0
run on that SDK), brings the harness up (or reuses a running one; it is stopped at the end
only if this run started it), starts the loopback Swift fake (Phoenix keeps its release
records and deploy lease in the object store; the harness runs no Swift) and names it in a
private copy of clouds.yaml (``object_store_endpoint_override``: the shared Keystone
catalog is left alone, so tests using the harness meanwhile are not disturbed), raises the
project's instance quota for 2 x N servers (restored at the end), and prints one table,
then the same as markdown.

What is compared, for each N: each tool gets its own app and its own Octavia load
balancer + pool. Release A (N servers of image ``golden``, all pool members) is set up by
the tool itself and is not timed. The *timed* part is the blue-green redeploy to a second
image B: boot N new servers, add them to the pool, take the old ones out, delete the old
servers. The wall time is measured by this script around the whole command
(``phoenix deploy`` from the CLI; ``ansible-playbook bench/peers/blue_green.yml``),
process start-up included. Then everything the tool made is removed (not timed).

How requests are counted, the same way for both: both tools speak through openstacksdk
and keystoneauth, and keystoneauth logs one ``REQ: curl ...`` line per HTTP request at
debug level (Phoenix: ``--log-level debug``; the playbook: the collection's
``sdk_log_path`` + ``sdk_log_level: DEBUG``, set in ``module_defaults``). Token requests
are sent unlogged (``log=False``) but announced by ``Making authentication request to
...``; each of those counts as one Keystone request. The service is read from the URL's
port (the harness's ports; the Swift fake's port is "swift"). "requests" in the table
excludes Keystone, which is shown apart: every Ansible module run is a new process that
fetches its own token and re-discovers the APIs. As a check, the script also prints
Phoenix's own request tally (``provider_requests`` of ``--output json``) and Octavia's
server-side access log count (which also sees anyone else using the harness meanwhile).

What Phoenix does that the playbook does not (and still pays for in the numbers): it
takes the app's lease (a lock with a TTL, in the object store) so two deploys cannot
interleave; it records the release and each step (history, crash-resume: a rerun after a
crash converges from the tags and the ledger); it health-gates the new servers (here
``mode: provider``: Nova's status and Octavia's member status) before they take traffic,
drains the old members (``drain_timeout: 3s``, weight 0 before removal) and rolls back on
its own when the gate fails, so the old release keeps serving. The playbook stops where a
task fails, with both releases half in the pool, and two runs at once trample each other.
"""

from __future__ import annotations

import argparse
import collections
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.openstack import harness  # noqa: E402
from tests.openstack.fake_object_dns import FakeObjectDns, KeystoneTokens  # noqa: E402

PEERS = Path(__file__).resolve().parent / "peers"
REQUIREMENTS = PEERS / "requirements.txt"
PATCH = PEERS / "openstack-cloud-2.5.0-sdk-version.patch"
PATCH_MARK = "importlib.import_module('openstack.version')"
VENV = Path(os.environ.get(
    "PHOENIX_BENCH_ANSIBLE_VENV", Path.home() / ".cache" / "phoenix-bench" / "ansible-venv"))
IMAGE_A = "golden"  # the harness's image

SPEC = """\
app: {app}
provider: {{name: openstack, cloud: phoenix-harness}}
regions: [{region}]
image: {{name: {image}}}
flavor: m1.small
network: private
count: {count}
template: t.yaml.j2
health: {{mode: provider, interval: 1s, timeout: 0.5s, healthy_threshold: 1, deadline: 300s}}
rollout: {{strategy: blue-green, max_unavailable: 0, drain_timeout: 3s}}
load_balancer: {{pool: {pool}, member_port: 8080}}
"""
USER_DATA = "#cloud-config\n{}\n"  # the playbook sends the same (bench/peers/vars.yml)

KEYSTONE = "keystone"

# --------------------------------------------------------------------------- counting

# keystoneauth quotes the URL when it has a query string (-X GET "http://...?name=x"), and
# Phoenix's console log escapes that quote (-X GET \"http://...\").
_REQUEST = re.compile(r'REQ: curl -g -i (?:--\S+ )*-X ([A-Z]+) (?:\\?")?(https?://[^\s"\\]+)')
_TOKEN = re.compile(r'Making authentication request to (https?://[^\s"\\\']+)')


def count_requests(log_text: str, services: Mapping[int, str]) -> collections.Counter[str]:
    """HTTP requests per service in keystoneauth's debug log: one per ``REQ: curl`` line,
    plus one per ``Making authentication request`` (token requests are sent unlogged).
    The service is ``services[port]``, or ``port N`` for a port it does not name."""
    counts: collections.Counter[str] = collections.Counter()

    def service(url: str) -> str:
        port = urlsplit(url).port
        return services.get(port, f"port {port}") if port is not None else "other"

    for match in _REQUEST.finditer(log_text):
        method, url = match.groups()
        if method == "POST" and urlsplit(url).path.endswith("/auth/tokens"):
            continue  # logged after all (not by keystoneauth today): counted below
        counts[service(url)] += 1
    for match in _TOKEN.finditer(log_text):
        counts[service(match.group(1))] += 1
    return counts


def ratio(peer: float, phoenix: float) -> str:
    return f"{peer / phoenix:.2f}x" if phoenix else "-"


@dataclass
class Run:
    """One timed redeploy by one tool."""

    nodes: int
    tool: str
    round: int
    wall: float
    requests: collections.Counter[str]
    checks: list[str] = field(default_factory=list)  # cross-checks, printed under the table

    @property
    def keystone(self) -> int:
        return self.requests[KEYSTONE]

    @property
    def non_keystone(self) -> int:
        return sum(n for s, n in self.requests.items() if s != KEYSTONE)

    @property
    def octavia(self) -> int:
        return self.requests["octavia"]


def table(runs: list[Run], markdown: bool) -> str:
    head = ["nodes", "run", "tool", "wall s", "requests (non-Keystone)", "Keystone requests",
            "Octavia requests", "ratio peer/phoenix"]
    rows = []
    for run in runs:
        versus = ""
        if run.tool != "phoenix":
            base = next(r for r in runs if r.tool == "phoenix" and r.nodes == run.nodes
                        and r.round == run.round)
            versus = (f"time {ratio(run.wall, base.wall)}, requests "
                      f"{ratio(run.non_keystone, base.non_keystone)} (with Keystone "
                      f"{ratio(sum(run.requests.values()), sum(base.requests.values()))})")
        rows.append([str(run.nodes), str(run.round), run.tool, f"{run.wall:.1f}",
                     str(run.non_keystone), str(run.keystone), str(run.octavia), versus])
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in [head, *rows])


# --------------------------------------------------------------------------- the peer


def peer_venv() -> Path:
    """The peer's virtualenv, made (or remade when the requirements or Phoenix's SDK
    version changed) and patched; returns its bin directory."""
    sdk = importlib.metadata.version("openstacksdk")
    key = json.dumps({"requirements": REQUIREMENTS.read_text(), "openstacksdk": sdk})
    marker = VENV / ".phoenix-bench-installed"
    if not (marker.exists() and marker.read_text() == key and (VENV / "bin/python").exists()):
        print(f"making the peer's virtualenv {VENV} (ansible, openstacksdk=={sdk})")
        base = getattr(sys, "_base_executable", sys.executable)
        uv = Path(sys.executable).with_name("uv")
        wanted = ["-r", str(REQUIREMENTS), f"openstacksdk=={sdk}"]
        if uv.exists():
            commands = [[str(uv), "venv", "-q", "--clear", "--python", base, str(VENV)],
                        [str(uv), "pip", "install", "-q", "--python", str(VENV / "bin/python"),
                         *wanted]]
        else:
            commands = [[base, "-m", "venv", "--clear", str(VENV)],
                        [str(VENV / "bin/pip"), "install", "-q", *wanted]]
        for command in commands:
            subprocess.run(command, check=True)
        marker.write_text(key)
    collection = next(VENV.glob("lib/python*/site-packages/ansible_collections/openstack/cloud"))
    module_utils = collection / "plugins/module_utils/openstack.py"
    if module_utils.read_text().count(PATCH_MARK) < 2:
        if not shutil.which("patch"):
            raise SystemExit(f"`patch` is needed to apply {PATCH} (apt-get install patch)")
        subprocess.run(["patch", "-p1", "--forward", "--quiet", "-d", str(collection),
                        "-i", str(PATCH)], check=True)
    return VENV / "bin"


def run_playbook(bin_dir: Path, sdk_log: Path, **extra: Any) -> tuple[float, str]:
    """Wall time and the SDK's debug log of one ``ansible-playbook`` run."""
    sdk_log.unlink(missing_ok=True)
    site = next(VENV.glob("lib/python*/site-packages"))
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCALHOST_WARNING": "false",
           "ANSIBLE_COLLECTIONS_PATH": str(site),  # the venv's collections, no other copy
           # async job results and module temp files beside the log (removed with it),
           # not under ~/.ansible_async and ~/.ansible
           "ANSIBLE_HOME": str(sdk_log.parent / "ansible-home"),
           "ANSIBLE_ASYNC_DIR": str(sdk_log.parent / "ansible-async"),
           "ANSIBLE_LOCAL_TEMP": str(sdk_log.parent / "ansible-tmp"),
           "ANSIBLE_REMOTE_TEMP": str(sdk_log.parent / "ansible-tmp")}
    start = time.monotonic()
    done = subprocess.run(
        [str(bin_dir / "ansible-playbook"), "-i", "inventory.yml", "blue_green.yml",
         "-e", json.dumps({**extra, "sdk_log_path": str(sdk_log)})],
        cwd=PEERS, env=env, capture_output=True, text=True, timeout=1800, check=False,
    )
    elapsed = time.monotonic() - start
    if done.returncode != 0:
        raise SystemExit(f"ansible-playbook failed ({extra}):\n{done.stdout[-4000:]}")
    return elapsed, sdk_log.read_text() if sdk_log.exists() else ""


# --------------------------------------------------------------------------- the cloud


@dataclass
class Cloud:
    conn: Any
    services: dict[int, str]
    image_b: str
    workdir: Path
    keep_logs: Path | None = None  # where each timed run's log is copied, if anywhere

    def keep(self, name: str, log_text: str) -> None:
        if self.keep_logs is not None:
            self.keep_logs.mkdir(parents=True, exist_ok=True)
            (self.keep_logs / name).write_text(log_text)


def sweep(conn: Any, app: str, wait: float = 300) -> int:
    """Delete every server of ``app`` still there and wait until Nova has; returns how
    many were left (by a tool's own clean-up, 0)."""
    left = [s for s in conn.compute.servers() if s.name.startswith(f"{app}-")]
    for server in left:
        conn.compute.delete_server(server, ignore_missing=True)
    for server in left:
        conn.compute.wait_for_delete(server, wait=wait)
    return len(left)


def check_result(conn: Any, app: str, pool: str, image: str, count: int) -> str:
    """What the cloud shows after a redeploy: the pool's members are exactly the ``count``
    servers of ``image``, and no server of the old release is left (once Nova is done)."""
    image_id = conn.image.find_image(image, ignore_missing=False).id
    deadline = time.monotonic() + 120
    while True:
        servers = [s for s in conn.compute.servers() if s.name.startswith(f"{app}-")]
        old = [s for s in servers if s.image.id != image_id]
        if not old or time.monotonic() > deadline:
            break
        time.sleep(1)
    new_addresses = {a["addr"] for s in servers if s.image.id == image_id
                     for a in s.addresses.get("private", [])}
    members = {m.address for m in conn.load_balancer.members(
        conn.load_balancer.find_pool(pool, ignore_missing=False))}
    problems = []
    if len(servers) - len(old) != count:
        problems.append(f"{len(servers) - len(old)} new servers")
    if old:
        problems.append(f"{len(old)} old servers left")
    if members != new_addresses or len(members) != count:
        problems.append(f"pool has {len(members)} members, {len(members & new_addresses)} new")
    return "ok" if not problems else "; ".join(problems)


def octavia_logged(since: harness.OctaviaRequests) -> int:
    return len(since.since_start())


def phoenix_case(cloud: Cloud, _bin_dir: Path, count: int, round_: int) -> Run:
    app = f"bpx{uuid.uuid4().hex[:5]}"
    workdir = cloud.workdir / app
    workdir.mkdir()
    (workdir / "t.yaml.j2").write_text(USER_DATA)

    def deploy(image: str, *args: str) -> tuple[float, str, dict[str, Any]]:
        (workdir / "phoenix.yaml").write_text(SPEC.format(
            app=app, region=harness.REGION, image=image, count=count, pool=app))
        start = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "phoenix", "--log-level", "debug", "--output", "json",
             *args, "phoenix.yaml"],
            cwd=workdir, capture_output=True, text=True, timeout=1800, check=False,
        )
        elapsed = time.monotonic() - start
        result = json.loads(done.stdout) if done.stdout.strip().startswith("{") else {}
        if done.returncode != 0:
            raise SystemExit(f"phoenix {' '.join(args)} failed:\n{done.stderr[-4000:]}")
        return elapsed, done.stderr, result

    with harness.octavia_pool(cloud.conn, app):
        try:
            deploy(IMAGE_A, "deploy")  # release A: set up, not timed
            octavia = harness.OctaviaRequests()
            wall, log_text, result = deploy(cloud.image_b, "deploy")
            served = octavia_logged(octavia)
            cloud.keep(f"phoenix-{count}-run{round_}.log", log_text)
            requests = count_requests(log_text, cloud.services)
            outcome = result.get("outcome")
            checks = [f"outcome {outcome}",
                      f"cloud: {check_result(cloud.conn, app, app, cloud.image_b, count)}",
                      f"phoenix's own tally {result.get('provider_calls')}: "
                      f"{result.get('provider_requests')}",
                      f"octavia access log {served}"]
            deploy(cloud.image_b, "destroy", "--yes")
        finally:
            left = sweep(cloud.conn, app)
    if left:
        checks.append(f"{left} servers left after destroy (swept)")
    return Run(count, "phoenix", round_, wall, requests, checks)


def ansible_case(cloud: Cloud, bin_dir: Path, count: int, round_: int) -> Run:
    app = f"bpa{uuid.uuid4().hex[:5]}"
    sdk_log = cloud.workdir / f"{app}-sdk.log"
    common = {"app": app, "pool": app, "count": count}
    with harness.octavia_pool(cloud.conn, app):
        try:
            run_playbook(bin_dir, sdk_log, release="a", image=IMAGE_A, **common)  # not timed
            octavia = harness.OctaviaRequests()
            wall, log_text = run_playbook(bin_dir, sdk_log, release="b", image=cloud.image_b,
                                          **common)
            served = octavia_logged(octavia)
            cloud.keep(f"ansible-{count}-run{round_}.log", log_text)
            requests = count_requests(log_text, cloud.services)
            checks = [f"cloud: {check_result(cloud.conn, app, app, cloud.image_b, count)}",
                      f"octavia access log {served}"]
        finally:
            sweep(cloud.conn, app)
    return Run(count, "ansible", round_, wall, requests, checks)


class Quota:
    """The phoenix project's Nova quota: raised to at least ``instances`` (m1.small: 1 vCPU,
    512 MB each) before each case, since tests sharing the harness may set it back
    meanwhile, and restored to what it was at the start when the bench ends."""

    def __init__(self, admin: Any, instances: int) -> None:
        self.admin = admin
        self.instances = instances
        self.project = admin.identity.find_project(harness.PROJECT, ignore_missing=False)
        self.before = admin.get_compute_quotas(self.project.id)

    def ensure(self) -> None:
        now = self.admin.get_compute_quotas(self.project.id)
        if now.instances < self.instances or now.cores < self.instances \
                or now.ram < self.instances * 512:
            self.admin.set_compute_quotas(
                self.project.id, instances=max(self.instances, int(now.instances)),
                cores=max(self.instances, int(now.cores)),
                ram=max(int(now.ram), self.instances * 512))

    def restore(self) -> None:
        before = self.before
        self.admin.set_compute_quotas(
            self.project.id, instances=before.instances, cores=before.cores, ram=before.ram)


def private_clouds_yaml(shared: Path, fake: FakeObjectDns, project_id: str, to: Path) -> Path:
    """A copy of the harness's clouds.yaml whose ``phoenix-harness`` cloud finds its object
    store at the Swift fake by ``object_store_endpoint_override``, not in the catalog."""
    import yaml

    clouds = yaml.safe_load(shared.read_text())
    clouds["clouds"]["phoenix-harness"]["object_store_endpoint_override"] = (
        f"{fake.url}/v1/AUTH_{project_id}")
    to.write_text(yaml.safe_dump(clouds))
    return to


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[6, 20])
    parser.add_argument("--repeat", type=int, default=1, help="rounds of every measurement")
    parser.add_argument("--keep-logs", type=Path, metavar="DIR",
                        help="copy the SDK debug log of each timed run into DIR")
    options = parser.parse_args()
    began = time.monotonic()

    import openstack

    bin_dir = peer_venv()
    info = harness.start()
    os.environ["OS_CLIENT_CONFIG_FILE"] = str(info.clouds_yaml)
    admin = openstack.connect(cloud="phoenix-harness-admin", region_name=harness.REGION)
    conn = openstack.connect(cloud="phoenix-harness", region_name=harness.REGION)
    fake = FakeObjectDns(token_validator=KeystoneTokens(admin.session, harness.KEYSTONE_URL))
    quota = Quota(admin, 2 * max(options.counts) + 10)
    image_b = None
    runs: list[Run] = []
    try:
        with fake, tempfile.TemporaryDirectory(prefix="bench-peers-") as tmp:
            os.environ["OS_CLIENT_CONFIG_FILE"] = str(private_clouds_yaml(
                info.clouds_yaml, fake, conn.current_project_id, Path(tmp) / "clouds.yaml"))
            image_b = conn.image.create_image(
                name=f"golden-b-{uuid.uuid4().hex[:6]}", data=b"release B", disk_format="raw",
                container_format="bare", allow_duplicates=True)
            services = {port: name for name, port in harness.PORTS.items()}
            services[fake.port] = "swift"
            cloud = Cloud(conn, services, image_b.name, Path(tmp), options.keep_logs)
            for round_ in range(1, options.repeat + 1):
                for count in options.counts:
                    for case in (phoenix_case, ansible_case):
                        quota.ensure()
                        run = case(cloud, bin_dir, count, round_)
                        runs.append(run)
                        detail = ", ".join(f"{k} {v}" for k, v in sorted(run.requests.items()))
                        print(f"[{count} nodes, run {round_}] {run.tool}: {run.wall:.1f}s, "
                              f"{detail}", flush=True)
    finally:
        quota.restore()
        if image_b is not None:
            conn.image.delete_image(image_b, ignore_missing=True)
        conn.close()
        admin.close()
        if info.started:
            harness.stop()

    print("\nBlue-green redeploy of N servers behind an Octavia pool (release A -> B), "
          "one command each, on the OpenStack harness\n")
    print(table(runs, markdown=False))
    print("\nRequests by service, and cross-checks:")
    for run in runs:
        detail = ", ".join(f"{k} {v}" for k, v in sorted(run.requests.items()))
        print(f"  {run.nodes:3d} nodes, run {run.round}, {run.tool:8s} {detail}")
        for check in run.checks:
            print(f"      {check}")
    print()
    print(table(runs, markdown=True))
    print(f"\nwhole command: {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main()

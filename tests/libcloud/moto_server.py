"""moto's server (``moto[server]``, pinned in the ``test`` extra) as a subprocess on 127.0.0.1.

``MotoServer`` starts ``python -m moto.server -H 127.0.0.1 -p 0`` (the interpreter running
the tests, so the same venv's moto), reads the port the server actually bound from its log
(no race for a "free" port), waits until ``/moto-api/`` answers, and stops it: SIGTERM,
then SIGKILL after a timeout. The server's output goes to a log file, never to a pipe
(moto logs every request: a pipe nobody reads would fill and stall the server).

One server serves every AWS service Phoenix's libcloud provider uses (EC2, ELB, Route53,
S3) in every region: moto's server picks the service and region from the request's SigV4
credential scope (not from the ``Host`` header; unsigned or SigV2 requests go to S3).
``reset()`` empties every backend (``POST /moto-api/reset``) between tests.

``snapshot()`` reads moto's state with boto3 (installed with moto) for assertions such as
"nothing left behind"; it is a test-side view, independent of libcloud.

Usage::

    with MotoServer() as moto:
        moto.endpoint        # "http://127.0.0.1:PORT"
        moto.client("ec2")   # a boto3 client pointed at the server
        moto.snapshot().live_instances

or ``python -m tests.libcloud.moto_server`` to run one in the foreground (Ctrl-C stops it).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.libcloud.shims import ENDPOINT_ENV

HOST = "127.0.0.1"
REGION = "us-east-1"
# moto accepts any credentials (it does not check signatures unless told to); these are
# obviously fake so nothing real is ever sent anywhere.
ACCESS_KEY = "AKIAMOTOTESTING00000"
SECRET_KEY = "moto-testing-secret-not-a-real-one"

_RUNNING_ON = re.compile(r"Running on http://127\.0\.0\.1:(\d+)")
TERMINATED_STATES = frozenset({"terminated", "shutting-down"})


class MotoServerError(RuntimeError):
    pass


@dataclass
class MotoState:
    """What moto holds, read with boto3 (see ``MotoServer.snapshot``)."""

    # instance id -> {"state": ..., "tags": {...}} for instances not terminated
    live_instances: dict[str, dict[str, Any]] = field(default_factory=dict)
    # classic ELB name -> registered instance ids
    load_balancers: dict[str, list[str]] = field(default_factory=dict)
    # zone name -> [(record name, type, [values])] without the zone's own SOA and NS
    zones: dict[str, list[tuple[str, str, list[str]]]] = field(default_factory=dict)
    # bucket -> keys
    buckets: dict[str, list[str]] = field(default_factory=dict)

    def is_empty(self) -> bool:
        """No live instance, balancer, zone or bucket at all."""
        return not (self.live_instances or self.load_balancers or self.zones or self.buckets)


class MotoServer:
    """A moto server subprocess on 127.0.0.1 (a context manager)."""

    def __init__(
        self,
        *,
        log_path: Path | None = None,
        startup_timeout: float = 60.0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.host = HOST
        self.port: int | None = None
        self.startup_timeout = startup_timeout
        self._log_path = log_path
        self._own_log = log_path is None
        self._env = env or {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._clients: dict[tuple[str, str, str], Any] = {}

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        if self.port is None:
            raise MotoServerError("moto server not started")
        return f"http://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        if self._log_path is None:
            raise MotoServerError("moto server not started")
        return self._log_path

    def start(self) -> MotoServer:
        if self._proc is not None:
            return self
        if self._log_path is None:
            fd, name = tempfile.mkstemp(prefix="moto-server-", suffix=".log")
            os.close(fd)
            self._log_path = Path(name)
        env = dict(os.environ)
        # no real credentials or endpoints leak into moto from the caller's environment
        for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "HTTP_PROXY", "HTTPS_PROXY",
                    "http_proxy", "https_proxy"):
            env.pop(var, None)
        env.update(self._env)
        with open(self._log_path, "wb") as log:
            self._proc = subprocess.Popen(
                # -p 0: the kernel picks a free port; the server prints the one it bound
                [sys.executable, "-m", "moto.server", "-H", self.host, "-p", "0"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise MotoServerError(
                    f"moto server exited with {self._proc.returncode}:\n{self._log_tail()}"
                )
            if self.port is None:
                match = _RUNNING_ON.search(self.log_path.read_text(errors="replace"))
                if match:
                    self.port = int(match.group(1))
            if self.port is not None and self._answers():
                return
            time.sleep(0.05)
        raise MotoServerError(
            f"moto server did not answer within {self.startup_timeout:.0f}s:\n"
            f"{self._log_tail()}"
        )

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=2) as resp:
                return int(resp.status) == 200
        except (OSError, urllib.error.URLError):
            return False

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL when it has not exited within ``timeout`` seconds."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)
        if self._own_log and self._log_path is not None:
            with contextlib.suppress(OSError):
                self._log_path.unlink()
            self._log_path = None
        self.port = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- libcloud ------------------------------------------------------------------------------

    def libcloud_args(self) -> dict[str, dict[str, Any]]:
        """Driver constructor kwargs (the spec's ``provider.options.<service>.args``) that
        point each libcloud driver at this server; used with ``shims.apply(endpoint)``."""
        where = {"host": self.host, "port": self.port, "secure": False}
        return {
            # SigV4: moto routes a request by its SigV4 credential scope ("ec2"); with
            # libcloud's default SigV2 it would answer as S3.
            "compute": {**where, "signature_version": "4"},
            # ElasticLBDriver(key, secret, region) takes no host/port/secure at all: the
            # shims send its connection to the endpoint given to shims.apply().
            "load_balancer": {},
            "dns": dict(where),
            "storage": dict(where),
        }

    def provider_options(self, *, container: str = "phoenix", dns: bool = True) -> dict[str, Any]:
        """The spec's ``provider.options`` for Phoenix's libcloud provider on this server:
        EC2, classic ELB, S3 (and Route53), credentials from ``environ()``'s variables."""
        args = self.libcloud_args()
        options: dict[str, Any] = {
            "credentials": {"key_env": "AWS_ACCESS_KEY_ID",
                            "secret_env": "AWS_SECRET_ACCESS_KEY"},
            "compute": {"driver": "ec2", "args": args["compute"]},
            "load_balancer": {"driver": "elb", "args": args["load_balancer"]},
            "storage": {"driver": "s3", "container": container, "args": args["storage"]},
        }
        if dns:
            options["dns"] = {"driver": "route53", "args": args["dns"]}
        return options

    def environ(self) -> dict[str, str]:
        """Environment for a subprocess (``phoenix_cli.py``): the endpoint for the shims
        and fake credentials (the names Phoenix specs use with ``key_env``/``secret_env``)."""
        return {
            ENDPOINT_ENV: self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        }

    # --- moto's own API ----------------------------------------------------------------------

    def reset(self) -> None:
        """Empty every backend (``POST /moto-api/reset``)."""
        request = urllib.request.Request(
            f"{self.endpoint}/moto-api/reset", data=b"", method="POST"
        )
        with urllib.request.urlopen(request, timeout=30) as resp:
            if int(resp.status) != 200:
                raise MotoServerError(f"moto reset answered {resp.status}")

    # --- boto3, for assertions ---------------------------------------------------------------

    def client(self, service: str, region: str = REGION) -> Any:
        """A boto3 client for ``service`` pointed at this server (tests only; cached)."""
        import boto3

        key = (self.endpoint, service, region)
        if key not in self._clients:
            self._clients[key] = boto3.client(
                service,
                region_name=region,
                endpoint_url=self.endpoint,
                aws_access_key_id=ACCESS_KEY,
                aws_secret_access_key=SECRET_KEY,
            )
        return self._clients[key]

    def snapshot(self, regions: tuple[str, ...] = (REGION,)) -> MotoState:
        """Live instances and classic ELBs in ``regions``, Route53 zones, S3 buckets."""
        state = MotoState()
        for region in regions:
            ec2 = self.client("ec2", region)
            for page in ec2.get_paginator("describe_instances").paginate():
                for reservation in page["Reservations"]:
                    for inst in reservation["Instances"]:
                        if inst["State"]["Name"] in TERMINATED_STATES:
                            continue
                        state.live_instances[inst["InstanceId"]] = {
                            "state": inst["State"]["Name"],
                            "region": region,
                            "tags": {t["Key"]: t["Value"] for t in inst.get("Tags", [])},
                        }
            elb = self.client("elb", region)
            for lb in elb.describe_load_balancers()["LoadBalancerDescriptions"]:
                state.load_balancers[lb["LoadBalancerName"]] = [
                    i["InstanceId"] for i in lb.get("Instances", [])
                ]
        route53 = self.client("route53")
        for zone in route53.list_hosted_zones()["HostedZones"]:
            records = route53.list_resource_record_sets(HostedZoneId=zone["Id"])
            state.zones[zone["Name"]] = [
                (r["Name"], r["Type"], [v["Value"] for v in r.get("ResourceRecords", [])])
                for r in records["ResourceRecordSets"]
                if r["Type"] not in ("SOA", "NS")
            ]
        s3 = self.client("s3")
        for bucket in s3.list_buckets()["Buckets"]:
            keys: list[str] = []
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket["Name"]):
                keys += [obj["Key"] for obj in page.get("Contents", [])]
            state.buckets[bucket["Name"]] = keys
        return state


@contextlib.contextmanager
def moto_server(**kwargs: Any) -> Iterator[MotoServer]:
    """``with moto_server() as moto:`` -- a started server, stopped on exit."""
    with MotoServer(**kwargs) as server:
        yield server


def main() -> None:
    with moto_server() as server:
        print(f"moto server at {server.endpoint} (log {server.log_path}); Ctrl-C stops it",
              flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while server.running:
                time.sleep(1)


if __name__ == "__main__":
    main()

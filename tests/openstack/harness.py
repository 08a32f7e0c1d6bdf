"""Real OpenStack services on 127.0.0.1 for Phoenix's OpenStack provider tests.

    python tests/openstack/harness.py up|down|status|install

Everything lives under <repo>/.openstack/ (gitignored): three venvs (nova+keystone+placement+
glance, neutron, octavia), a MariaDB datadir, configs, logs (.openstack/logs/), pid files
(.openstack/run/) and clouds.yaml with the clouds ``phoenix-harness`` (non-admin project
"phoenix") and ``phoenix-harness-admin``.

Importable: ``start()`` brings everything up (or reuses what already answers) and returns
an ``Info``; ``stop()`` stops every process it started. No traffic ever leaves 127.0.0.1:
the "private" network's subnet is TEST-NET 192.0.2.0/24 and nothing is plugged.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
WRAP = HERE / "oswrap"
REPO = HERE.parents[1]
BASE = Path(os.environ.get("PHOENIX_OPENSTACK_HOME", REPO / ".openstack"))
LOGS, RUN, ETC, DATA, STATE = (BASE / d for d in ("logs", "run", "etc", "data", "state"))

HOST = "127.0.0.1"
PORTS = {
    "mariadb": 23306,
    "keystone": 25357,
    "placement": 28778,
    "glance": 29292,
    "neutron": 29696,
    "nova": 28774,
    "octavia": 29876,
}
REGION = "RegionOne"
ADMIN_PASSWORD = "harness-admin"
SERVICE_PASSWORD = "harness-service"
USER, USER_PASSWORD, PROJECT = "phoenix", "harness-phoenix", "phoenix"
DB_USER, DB_PASSWORD = "openstack", "harness-db"
DATABASES = (
    "keystone",
    "placement",
    "glance",
    "nova_api",
    "nova",
    "nova_cell0",
    "neutron",
    "octavia",
)

COMMON_PINS = ["gunicorn==27.0.1", "PyMySQL==1.2.4", "oslo.messaging==18.3.1"]
VENVS = {
    "nova": [
        "nova==34.0.0",
        "keystone==30.0.0",
        "openstack-placement==16.0.0",
        "glance==33.0.0",
        *COMMON_PINS,
    ],
    "neutron": ["neutron==29.0.0", *COMMON_PINS],
    "octavia": ["octavia==19.0.0", *COMMON_PINS],
}
INSTALL_MARKER = ".phoenix-harness-installed"

PROBE_TIMEOUT = 3.0
START_DEADLINE = float(os.environ.get("PHOENIX_OPENSTACK_DEADLINE", "300"))


def url(name: str, path: str = "") -> str:
    return f"http://{HOST}:{PORTS[name]}{path}"


KEYSTONE_URL = url("keystone", "/v3")
ENDPOINTS = [
    ("placement", "placement", url("placement")),
    ("image", "glance", url("glance")),
    ("network", "neutron", url("neutron")),
    ("compute", "nova", url("nova", "/v2.1")),
    ("load-balancer", "octavia", url("octavia")),
]
SERVICE_USERS = ["nova", "placement", "glance", "neutron", "octavia"]


def log(msg: str) -> None:
    print(f"[harness {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def venv_bin(venv: str, exe: str) -> str:
    return str(BASE / f"venv-{venv}" / "bin" / exe)


def site_packages(venv: str) -> Path:
    return next((BASE / f"venv-{venv}" / "lib").glob("python3*/site-packages"))


# ----------------------------------------------------------------------------- install


def _base_python() -> str:
    """A real interpreter (not this venv's) of a version the OpenStack releases support."""
    major, minor = sys.version_info[:2]
    here = Path(sys.base_prefix) / "bin" / f"python{major}.{minor}"
    if sys.version_info[:2] in ((3, 11), (3, 12)) and here.exists():
        return str(here)
    for cand in ("python3.11", "python3.12"):
        p = shutil.which(cand)
        if p:
            return p
    return sys.executable


def _neutron_plugin_dist(sp: Path) -> None:
    """Register the ML2 mechanism driver 'phoenix_bound' (entry points need a dist-info)."""
    di = sp / "phoenix_harness_ml2-0.1.dist-info"
    di.mkdir(exist_ok=True)
    (di / "METADATA").write_text("Metadata-Version: 2.1\nName: phoenix-harness-ml2\nVersion: 0.1\n")
    (di / "entry_points.txt").write_text(
        "[neutron.ml2.mechanism_drivers]\nphoenix_bound = mech_bound:BoundMechanismDriver\n"
    )
    (di / "RECORD").write_text("")
    (sp / "phoenix_harness.pth").write_text(str(WRAP) + "\n")


def _ensure_mariadb() -> None:
    if _mariadbd():
        return
    log("installing mariadb-server with apt")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    with open(LOGS / "apt.log", "ab") as out:
        subprocess.run(["apt-get", "update"], stdout=out, stderr=out, check=False)
        subprocess.run(
            ["apt-get", "install", "-y", "mariadb-server"],
            stdout=out,
            stderr=out,
            check=True,
            env=env,
        )


CONSTRAINTS = HERE / "constraints"  # pip freeze of venvs that worked: reproducible installs


def _install_key(name: str, pkgs: list[str]) -> str:
    """What a finished venv was installed from; a change of either means reinstall."""
    frozen = (CONSTRAINTS / f"{name}.txt").read_bytes()
    return json.dumps({"packages": pkgs, "constraints": hashlib.sha256(frozen).hexdigest()})


def _uv() -> str | None:
    """uv (the test extra installs it) makes the three venvs in about 15 s where pip
    takes over 3 min; pip stays the fallback."""
    beside = Path(sys.executable).with_name("uv")
    return str(beside) if beside.exists() else shutil.which("uv")


def _venv_command(vdir: Path, constraints: Path, pkgs: list[str]) -> str:
    """A shell command that makes ``vdir`` afresh with ``pkgs`` pinned by ``constraints``."""
    wanted = " ".join(shlex.quote(p) for p in pkgs)
    python, venv, frozen = (shlex.quote(str(x)) for x in (_base_python(), vdir, constraints))
    uv = _uv()
    if uv:
        uv = shlex.quote(uv)
        return (
            f"{uv} venv -q --clear --python {python} {venv} && "
            f"{uv} pip install -q --python {venv}/bin/python -c {frozen} {wanted}"
        )
    return (
        f"{python} -m venv --clear {venv} && {venv}/bin/pip install -q "
        f"--disable-pip-version-check -c {frozen} {wanted}"
    )


@contextlib.contextmanager
def _install_lock() -> Iterator[int]:
    """One installer at a time, across processes (a background install in the test session,
    a developer's ``harness.py up``): a second one waits, then finds the venvs complete.
    The pip children inherit the lock, so an installer killed mid-way still holds it
    until its orphaned pips finish: nobody reinstalls over a venv still being written."""
    BASE.mkdir(parents=True, exist_ok=True)
    with open(BASE / "install.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield handle.fileno()


def install() -> float:
    """Create the venvs (in parallel) and MariaDB; skip what is already complete."""
    with _install_lock() as lock_fd:
        return _install(lock_fd)


def _install(lock_fd: int) -> float:
    t0 = time.monotonic()
    for d in (BASE, LOGS, RUN, ETC, DATA, STATE):
        d.mkdir(parents=True, exist_ok=True)
    procs = {}
    for name, pkgs in VENVS.items():
        vdir = BASE / f"venv-{name}"
        marker = vdir / INSTALL_MARKER
        if marker.exists() and marker.read_text() == _install_key(name, pkgs):
            continue
        log(f"installing venv-{name}: {' '.join(pkgs)}")
        cmd = _venv_command(vdir, CONSTRAINTS / f"{name}.txt", pkgs)
        out = open(LOGS / f"install-{name}.log", "wb")  # noqa: SIM115 (closed after the child exits)
        procs[name] = (
            subprocess.Popen(["bash", "-c", cmd], stdout=out, stderr=out, pass_fds=(lock_fd,)),
            out,
        )
    _ensure_mariadb()
    failed = []
    for name, (p, out) in procs.items():
        rc = p.wait()
        out.close()
        if rc != 0:
            failed.append(name)
            continue
        if name == "neutron":
            _neutron_plugin_dist(site_packages("neutron"))
        (BASE / f"venv-{name}" / INSTALL_MARKER).write_text(_install_key(name, VENVS[name]))
    if failed:
        raise RuntimeError(f"install failed for {failed}; see {LOGS}/install-*.log")
    dt = time.monotonic() - t0
    if procs:
        log(f"install done in {dt:.1f}s")
    return dt


# ----------------------------------------------------------------------------- processes


def _pidfile(name: str) -> Path:
    return RUN / f"{name}.pid"


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):  # reap our own child (started by start())
        os.waitpid(pid, os.WNOHANG)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def running_pid(name: str) -> int | None:
    pf = _pidfile(name)
    if not pf.exists():
        return None
    try:
        pid = int(pf.read_text().strip())
    except ValueError:
        return None
    return pid if _alive(pid) else None


def spawn(name: str, argv: list[str], env: dict | None = None) -> int:
    out = open(LOGS / f"{name}.log", "ab")  # noqa: SIM115 (closed after the child exits)
    out.write(f"\n===== start {time.ctime()}: {' '.join(argv)}\n".encode())
    out.flush()
    p = subprocess.Popen(
        argv,
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
        start_new_session=True,
        cwd=str(BASE),
    )
    out.close()
    _pidfile(name).write_text(str(p.pid))
    return p.pid


def run(name: str, argv: list[str], env: dict | None = None) -> None:
    with open(LOGS / f"{name}.log", "ab") as out:
        out.write(f"\n===== {time.ctime()}: {' '.join(argv)}\n".encode())
        out.flush()
        rc = subprocess.run(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=str(BASE),
        ).returncode
    if rc != 0:
        raise RuntimeError(f"{' '.join(argv[:3])} failed ({rc}); see {LOGS}/{name}.log")


def run_parallel(jobs: dict[str, list[list[str]]], env: dict | None = None) -> None:
    """Each job is a chain of commands run in order; jobs run in parallel."""
    procs = {}
    for name, chain in jobs.items():
        script = " && ".join(shlex.join(cmd) for cmd in chain)
        out = open(LOGS / f"{name}.log", "ab")  # noqa: SIM115 (closed after the child exits)
        out.write(f"\n===== {time.ctime()}: {script}\n".encode())
        out.flush()
        procs[name] = (
            subprocess.Popen(
                ["bash", "-c", script],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                cwd=str(BASE),
            ),
            out,
        )
    failed = []
    for name, (p, out) in procs.items():
        if p.wait() != 0:
            failed.append(name)
        out.close()
    if failed:
        raise RuntimeError(f"setup failed: {failed}; see {LOGS}/<name>.log")


def stop_process(name: str, grace: float = 10.0) -> bool:
    pid = running_pid(name)
    if pid is None:
        _pidfile(name).unlink(missing_ok=True)
        return False
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        if not _alive(pid):
            break
    _pidfile(name).unlink(missing_ok=True)
    return True


# ----------------------------------------------------------------------------- probes


def http_status(u: str, timeout: float = PROBE_TIMEOUT) -> int | None:
    try:
        with urllib.request.urlopen(u, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except (OSError, ValueError):
        return None


def http_json(
    method: str, u: str, body: dict | None = None, token: str | None = None, timeout: float = 10.0
) -> tuple[int, dict, dict]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(u, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    req.add_header("Accept", "application/json")
    if token:
        req.add_header("X-Auth-Token", token)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            return r.status, dict(r.headers), (json.loads(raw) if raw else {})
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), {}


def admin_token() -> str:
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {
                        "name": "admin",
                        "domain": {"name": "Default"},
                        "password": ADMIN_PASSWORD,
                    }
                },
            },
            "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}},
        }
    }
    code, headers, _ = http_json("POST", KEYSTONE_URL + "/auth/tokens", body)
    if code != 201:
        raise RuntimeError(f"keystone auth failed: {code}")
    return headers.get("X-Subject-Token") or headers.get("x-subject-token")


PROBES = {
    "keystone": url("keystone", "/v3"),
    "placement": url("placement", "/"),
    "glance": url("glance", "/versions"),
    "neutron": url("neutron", "/"),
    "nova": url("nova", "/"),
    "octavia": url("octavia", "/"),
}


def answers(name: str) -> bool:
    if name == "mariadb":
        import socket

        try:
            with socket.create_connection((HOST, PORTS["mariadb"]), timeout=PROBE_TIMEOUT):
                return True
        except OSError:
            return False
    code = http_status(PROBES[name])
    return code is not None and code < 500


def wait_for(name: str, deadline: float, check=None) -> float:
    t0 = time.monotonic()
    check = check or (lambda: answers(name))
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} did not answer in time; see {LOGS}/{name}.log")
        if name in SERVICES and running_pid(name) is None:
            raise RuntimeError(f"{name} exited; see {LOGS}/{name}.log")
        time.sleep(0.3)
    return time.monotonic() - t0


def hypervisor_ready() -> bool:
    try:
        tok = admin_token()
        code, _, body = http_json(
            "GET", url("nova", "/v2.1/os-hypervisors"), token=tok, timeout=PROBE_TIMEOUT
        )
        if code != 200 or not body.get("hypervisors"):
            return False
        # discovered by the scheduler == mapped to a cell: a host list names it
        code, _, body = http_json(
            "GET",
            url("nova", "/v2.1/os-services?binary=nova-compute"),
            token=tok,
            timeout=PROBE_TIMEOUT,
        )
        if code != 200 or not body.get("services"):
            return False
        return _host_mapped()
    except (OSError, RuntimeError):
        return False


def _host_mapped() -> bool:
    out = subprocess.run(
        [
            _mariadb_client(),
            "--protocol=tcp",
            "-h",
            HOST,
            "-P",
            str(PORTS["mariadb"]),
            "-u",
            DB_USER,
            f"-p{DB_PASSWORD}",
            "-N",
            "-e",
            "SELECT COUNT(*) FROM nova_api.host_mappings",
        ],
        capture_output=True,
        text=True,
        timeout=10,
    )
    return out.returncode == 0 and out.stdout.strip() not in ("", "0")


# ----------------------------------------------------------------------------- mariadb


def _mariadbd() -> str | None:
    for n in ("mariadbd", "mysqld"):
        p = shutil.which(n) or (f"/usr/sbin/{n}" if Path(f"/usr/sbin/{n}").exists() else None)
        if p:
            return p
    return None


def _mariadb_client() -> str:
    return shutil.which("mariadb") or shutil.which("mysql") or "mariadb"


def start_mariadb(deadline: float) -> None:
    datadir = DATA / "mariadb"
    sock = RUN / "mariadb.sock"
    if running_pid("mariadb") and answers("mariadb"):
        return
    if not (datadir / "mysql").exists():
        installer = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
        run(
            "mariadb",
            [
                installer,
                "--no-defaults",
                f"--datadir={datadir}",
                "--user=root",
                "--auth-root-authentication-method=socket",
                "--skip-test-db",
            ],
        )
    spawn(
        "mariadb",
        [
            _mariadbd(),
            "--no-defaults",
            f"--datadir={datadir}",
            f"--socket={sock}",
            f"--port={PORTS['mariadb']}",
            f"--bind-address={HOST}",
            "--user=root",
            f"--pid-file={RUN / 'mariadbd.pid'}",
            "--skip-log-bin",
            "--innodb-buffer-pool-size=128M",
            "--max-connections=1000",
            "--innodb-flush-log-at-trx-commit=0",
            "--skip-name-resolve",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_general_ci",
        ],
    )
    wait_for("mariadb", deadline, lambda: sock.exists() and answers("mariadb"))
    sql = "".join(f"CREATE DATABASE IF NOT EXISTS {d};" for d in DATABASES)
    sql += (
        f"CREATE USER IF NOT EXISTS '{DB_USER}'@'{HOST}' IDENTIFIED BY '{DB_PASSWORD}';"
        f"GRANT ALL PRIVILEGES ON *.* TO '{DB_USER}'@'{HOST}'; FLUSH PRIVILEGES;"
    )
    run("mariadb", [_mariadb_client(), f"--socket={sock}", "-uroot", "-e", sql])


def db(name: str) -> str:
    return f"mysql+pymysql://{DB_USER}:{DB_PASSWORD}@{HOST}:{PORTS['mariadb']}/{name}?charset=utf8"


# ----------------------------------------------------------------------------- configs


def authtoken(user: str) -> str:
    return f"""
[keystone_authtoken]
www_authenticate_uri = {KEYSTONE_URL}
auth_url = {KEYSTONE_URL}
auth_type = password
username = {user}
password = {SERVICE_PASSWORD}
project_name = service
user_domain_name = Default
project_domain_name = Default
region_name = {REGION}
service_token_roles_required = true
http_connect_timeout = 10
"""


def ks_auth(section: str, user: str, extra: str = "") -> str:
    return f"""
[{section}]
auth_type = password
auth_url = {KEYSTONE_URL}
username = {user}
password = {SERVICE_PASSWORD}
project_name = service
user_domain_name = Default
project_domain_name = Default
region_name = {REGION}
{extra}"""


def write_configs() -> None:
    for d in ("keystone", "placement", "glance", "nova", "neutron", "octavia"):
        (ETC / d).mkdir(parents=True, exist_ok=True)
    locks = DATA / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    common = f"""
[oslo_concurrency]
lock_path = {locks}

[oslo_messaging_notifications]
driver = noop
"""
    # keystone
    kdir = ETC / "keystone"
    (kdir / "keystone.conf").write_text(f"""[DEFAULT]
debug = false

[database]
connection = {db("keystone")}

[token]
provider = fernet

[fernet_tokens]
key_repository = {kdir / "fernet-keys"}

[fernet_receipts]
key_repository = {kdir / "fernet-keys"}

[credential]
key_repository = {kdir / "credential-keys"}
{common}""")
    # placement
    (ETC / "placement" / "placement.conf").write_text(f"""[DEFAULT]
[placement_database]
connection = {db("placement")}

[api]
auth_strategy = keystone
{authtoken("placement")}{common}""")
    # glance
    gdir = ETC / "glance"
    shutil.copy(BASE / "venv-nova" / "etc" / "glance" / "glance-api-paste.ini", gdir)
    for d in ("images", "staging", "tasks"):
        (DATA / "glance" / d).mkdir(parents=True, exist_ok=True)
    (gdir / "glance-api.conf").write_text(f"""[DEFAULT]
enabled_backends = fs:file
workers = 1

[database]
connection = {db("glance")}

[paste_deploy]
flavor = keystone

[glance_store]
default_backend = fs

[fs]
filesystem_store_datadir = {DATA / "glance" / "images"}

[os_glance_staging_store]
filesystem_store_datadir = {DATA / "glance" / "staging"}

[os_glance_tasks_store]
filesystem_store_datadir = {DATA / "glance" / "tasks"}
{authtoken("glance")}{common}""")
    # neutron
    ndir = ETC / "neutron"
    shutil.copy(BASE / "venv-neutron" / "etc" / "neutron" / "api-paste.ini", ndir)
    (ndir / "neutron.conf").write_text(f"""[DEFAULT]
core_plugin = ml2
service_plugins =
auth_strategy = keystone
transport_url = fake://
api_paste_config = {ndir / "api-paste.ini"}
state_path = {DATA / "neutron"}
notify_nova_on_port_status_changes = false
notify_nova_on_port_data_changes = false
dhcp_agent_notification = false
allow_overlapping_ips = true
rpc_workers = 0
rpc_state_report_workers = 0
api_workers = 1

[database]
connection = {db("neutron")}
{authtoken("neutron")}{common}""")
    (ndir / "ml2_conf.ini").write_text("""[ml2]
type_drivers = flat,vxlan
tenant_network_types = vxlan
mechanism_drivers = phoenix_bound
extension_drivers = port_security

[ml2_type_flat]
flat_networks = *

[ml2_type_vxlan]
vni_ranges = 1:1000

[securitygroup]
enable_security_group = true
""")
    # nova
    vdir = ETC / "nova"
    shutil.copy(BASE / "venv-nova" / "etc" / "nova" / "api-paste.ini", vdir)
    (DATA / "nova" / "instances").mkdir(parents=True, exist_ok=True)
    (vdir / "nova.conf").write_text(f"""[DEFAULT]
host = phoenix-harness
my_ip = {HOST}
transport_url = fake://
compute_driver = fake.FakeDriverWithoutFakeNodes
state_path = {DATA / "nova"}
instances_path = {DATA / "nova" / "instances"}
vif_plugging_is_fatal = false
vif_plugging_timeout = 0
report_interval = 10
service_down_time = 60
heal_instance_info_cache_interval = -1

[api]
auth_strategy = keystone

[wsgi]
api_paste_config = {vdir / "api-paste.ini"}

[api_database]
connection = {db("nova_api")}

[database]
connection = {db("nova")}

[scheduler]
discover_hosts_in_cells_interval = 2
workers = 1

[conductor]
workers = 1

[glance]
region_name = {REGION}
valid_interfaces = public

[service_user]
send_service_user_token = true
{ks_auth("service_user", "nova").split("]", 1)[1]}
{ks_auth("placement", "placement", "valid_interfaces = public")}
{ks_auth("neutron", "neutron", "valid_interfaces = public")}
{authtoken("nova")}{common}""")
    # octavia
    odir = ETC / "octavia"
    certs = odir / "certs"
    certs.mkdir(exist_ok=True)
    if not (certs / "ca.pem").exists():
        run(
            "octavia-setup",
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                str(certs / "ca.key"),
                "-out",
                str(certs / "ca.pem"),
                "-days",
                "3650",
                "-subj",
                "/CN=phoenix-harness-ca",
            ],
        )
    (odir / "octavia.conf").write_text(f"""[DEFAULT]
host = phoenix-harness
transport_url = fake://

[api_settings]
bind_host = {HOST}
bind_port = {PORTS["octavia"]}
auth_strategy = keystone
default_provider_driver = amphora
enabled_provider_drivers = amphora:The Octavia Amphora driver (noop backends)

[database]
connection = {db("octavia")}

[controller_worker]
amphora_driver = amphora_noop_driver
compute_driver = compute_noop_driver
network_driver = network_noop_driver
volume_driver = volume_noop_driver
image_driver = image_noop_driver
loadbalancer_topology = SINGLE
client_ca = {certs / "ca.pem"}
amp_image_tag = amphora
amp_flavor_id = 1
amp_boot_network_list = 00000000-0000-0000-0000-000000000001
workers = 1

[certificates]
cert_manager = noop_cert_manager
cert_generator = local_cert_generator
ca_certificate = {certs / "ca.pem"}
ca_private_key = {certs / "ca.key"}

[haproxy_amphora]
client_cert = {certs / "ca.pem"}
server_ca = {certs / "ca.pem"}

[health_manager]
heartbeat_key = phoenix-harness

[task_flow]
jobboard_enabled = false

[oslo_messaging]
topic = octavia_prov
{ks_auth("service_auth", "octavia")}
{authtoken("octavia")}{common}""")


# ----------------------------------------------------------------------------- services


def _env(svc: str) -> dict:
    return {
        "keystone": {"OS_KEYSTONE_CONFIG_FILES": str(ETC / "keystone" / "keystone.conf")},
        "placement": {"OS_PLACEMENT_CONFIG_DIR": str(ETC / "placement")},
        "glance": {"OS_GLANCE_CONFIG_DIR": str(ETC / "glance")},
        "neutron": {
            "OS_NEUTRON_CONFIG_DIR": str(ETC / "neutron"),
            "OS_NEUTRON_CONFIG_FILES": "neutron.conf;ml2_conf.ini",
        },
        "nova": {
            "OS_NOVA_CONFIG_DIR": str(ETC / "nova"),
            "OS_NOVA_CONFIG_FILES": "api-paste.ini;nova.conf",
        },
        "octavia": {},
    }[svc]


def _gunicorn(venv: str, svc: str, module: str, threads: int = 8) -> list[str]:
    return [
        venv_bin(venv, "gunicorn"),
        "--no-control-socket",
        "-b",
        f"{HOST}:{PORTS[svc]}",
        "-w",
        "1",
        "--threads",
        str(threads),
        "--timeout",
        "300",
        "--graceful-timeout",
        "5",
        "--pythonpath",
        str(WRAP),
        "--access-logfile",
        "-",
        f"{module}:application",
    ]


SERVICES = {
    "keystone": lambda: _gunicorn("nova", "keystone", "keystone_wsgi"),
    "placement": lambda: _gunicorn("nova", "placement", "placement_wsgi"),
    "glance": lambda: _gunicorn("nova", "glance", "glance_wsgi"),
    "neutron": lambda: _gunicorn("neutron", "neutron", "neutron_wsgi"),
    "nova": lambda: [venv_bin("nova", "python"), str(WRAP / "nova_all.py"), str(PORTS["nova"])],
    "octavia": lambda: [
        venv_bin("octavia", "python"),
        str(WRAP / "octavia_all.py"),
        str(ETC / "octavia" / "octavia.conf"),
        str(PORTS["octavia"]),
    ],
}
ORDER = ["keystone", "placement", "glance", "neutron", "nova", "octavia"]


def start_service(svc: str) -> None:
    if running_pid(svc) and answers(svc):
        return
    stop_process(svc)
    spawn(svc, SERVICES[svc](), _env(svc))


def init_databases() -> None:
    """Migrations for every service, in parallel (each is idempotent)."""
    k = ["--config-file", str(ETC / "keystone" / "keystone.conf")]
    n = ["--config-file", str(ETC / "nova" / "nova.conf")]
    kdir = ETC / "keystone"
    for d in ("fernet-keys", "credential-keys"):
        (kdir / d).mkdir(exist_ok=True, mode=0o700)
    keystone = [
        [venv_bin("nova", "keystone-manage"), *k, "db_sync"],
        [
            venv_bin("nova", "keystone-manage"),
            *k,
            "fernet_setup",
            "--keystone-user",
            "root",
            "--keystone-group",
            "root",
        ],
        [
            venv_bin("nova", "keystone-manage"),
            *k,
            "credential_setup",
            "--keystone-user",
            "root",
            "--keystone-group",
            "root",
        ],
        [
            venv_bin("nova", "keystone-manage"),
            *k,
            "bootstrap",
            "--bootstrap-password",
            ADMIN_PASSWORD,
            "--bootstrap-region-id",
            REGION,
            "--bootstrap-admin-url",
            KEYSTONE_URL,
            "--bootstrap-public-url",
            KEYSTONE_URL,
            "--bootstrap-internal-url",
            KEYSTONE_URL,
        ],
    ]
    if any((kdir / "fernet-keys").iterdir()):
        keystone = [keystone[0], keystone[3]]
    manage = shlex.join([venv_bin("nova", "nova-manage"), *n])
    nova = [
        [venv_bin("nova", "nova-manage"), *n, "api_db", "sync"],
        [venv_bin("nova", "nova-manage"), *n, "cell_v2", "map_cell0"],
        [
            "bash",
            "-c",
            f"{manage} cell_v2 list_cells | grep ' cell1 ' >/dev/null || "
            f"{manage} cell_v2 create_cell --name cell1 --transport-url fake://",
        ],
        [venv_bin("nova", "nova-manage"), *n, "db", "sync"],
    ]
    run_parallel(
        {
            "keystone-setup": keystone,
            "placement-setup": [
                [
                    venv_bin("nova", "placement-manage"),
                    "--config-file",
                    str(ETC / "placement" / "placement.conf"),
                    "db",
                    "sync",
                ]
            ],
            "glance-setup": [
                [
                    venv_bin("nova", "glance-manage"),
                    "--config-file",
                    str(ETC / "glance" / "glance-api.conf"),
                    "db_sync",
                ]
            ],
            "neutron-setup": [
                [
                    venv_bin("neutron", "neutron-db-manage"),
                    "--config-file",
                    str(ETC / "neutron" / "neutron.conf"),
                    "--config-file",
                    str(ETC / "neutron" / "ml2_conf.ini"),
                    "upgrade",
                    "heads",
                ]
            ],
            "nova-setup": nova,
            "octavia-setup": [
                [
                    venv_bin("octavia", "octavia-db-manage"),
                    "--config-file",
                    str(ETC / "octavia" / "octavia.conf"),
                    "upgrade",
                    "head",
                ]
            ],
        }
    )


def _settings() -> dict:
    return {
        "auth_url": KEYSTONE_URL,
        "admin_user": "admin",
        "admin_password": ADMIN_PASSWORD,
        "user": USER,
        "password": USER_PASSWORD,
        "project": PROJECT,
        "region": REGION,
        "service_users": SERVICE_USERS,
        "service_password": SERVICE_PASSWORD,
        "endpoints": ENDPOINTS,
    }


def setup_cloud(phase: str) -> str:
    out = subprocess.run(
        [venv_bin("nova", "python"), str(WRAP / "setup_cloud.py"), phase, json.dumps(_settings())],
        capture_output=True,
        text=True,
        timeout=300,
    )
    with open(LOGS / "setup-cloud.log", "a") as f:
        f.write(f"\n===== {phase} {time.ctime()}\n{out.stdout}\n{out.stderr}\n")
    if out.returncode != 0:
        raise RuntimeError(
            f"setup_cloud {phase} failed; see {LOGS}/setup-cloud.log:\n" + out.stderr[-2000:]
        )
    return out.stdout


def write_clouds_yaml() -> Path:
    def cloud(name, user, password, project):
        return f"""  {name}:
    auth:
      auth_url: {KEYSTONE_URL}
      username: {user}
      password: {password}
      project_name: {project}
      user_domain_name: Default
      project_domain_name: Default
    region_name: {REGION}
    identity_api_version: 3
    interface: public
"""

    p = BASE / "clouds.yaml"
    p.write_text(
        "clouds:\n"
        + cloud("phoenix-harness", USER, USER_PASSWORD, PROJECT)
        + cloud("phoenix-harness-admin", "admin", ADMIN_PASSWORD, "admin")
    )
    return p


# ----------------------------------------------------------------------------- API


@dataclass
class Info:
    clouds_yaml: Path
    cloud: str = "phoenix-harness"
    admin_cloud: str = "phoenix-harness-admin"
    started: bool = False
    timings: dict = field(default_factory=dict)


def all_answer() -> bool:
    return (
        all(answers(s) for s in ["mariadb", *ORDER])
        and (BASE / "clouds.yaml").exists()
        and (STATE / "cloud.done").exists()
    )


def start(deadline_s: float = START_DEADLINE) -> Info:
    """Bring the whole cloud up, or reuse a running one. Returns an Info."""
    if all_answer():
        return Info(clouds_yaml=BASE / "clouds.yaml", started=False)
    t_all = time.monotonic()
    timings: dict[str, float] = {}
    timings["install"] = install()
    t0 = time.monotonic()
    deadline = t0 + deadline_s
    start_mariadb(deadline)
    timings["mariadb"] = time.monotonic() - t0
    t = time.monotonic()
    write_configs()
    init_databases()
    timings["db_migrations+keystone_bootstrap"] = time.monotonic() - t
    t = time.monotonic()
    start_service("keystone")
    wait_for("keystone", deadline)
    timings["keystone"] = time.monotonic() - t
    t = time.monotonic()
    setup_cloud("identity")
    timings["identity_setup"] = time.monotonic() - t
    t = time.monotonic()
    for svc in ORDER[1:]:
        start_service(svc)
    for svc in ORDER[1:]:
        wait_for(svc, deadline)
        timings[svc] = time.monotonic() - t
    t = time.monotonic()
    wait_for("nova", deadline, hypervisor_ready)
    timings["hypervisor_discovered"] = time.monotonic() - t
    t = time.monotonic()
    setup_cloud("resources")
    (STATE / "cloud.done").write_text(time.ctime())
    timings["resources"] = time.monotonic() - t
    p = write_clouds_yaml()
    timings["cold_start_total (excl. install)"] = time.monotonic() - t0
    timings["total"] = time.monotonic() - t_all
    for k, v in timings.items():
        log(f"{k:38s} {v:6.1f}s")
    log(f"clouds.yaml: {p} (clouds phoenix-harness, phoenix-harness-admin)")
    return Info(clouds_yaml=p, started=True, timings=timings)


class OctaviaRequests:
    """The requests Octavia's API logged from now on (its access log, .openstack/logs/
    octavia.log), read back as ``(method, path)``: what a client really sent, however
    its SDK calls were made."""

    LINE = re.compile(r'"(GET|HEAD|POST|PUT|PATCH|DELETE) (/\S*) HTTP/[\d.]+" (\d{3})')

    def __init__(self) -> None:
        self.path = LOGS / "octavia.log"
        self.start = self.path.stat().st_size if self.path.exists() else 0

    def since_start(self) -> list[tuple[str, str]]:
        with open(self.path, "rb") as log_file:
            log_file.seek(self.start)
            text = log_file.read().decode("utf-8", "replace")
        return [(m.group(1), m.group(2)) for m in self.LINE.finditer(text)]

    def member_writes(self, pool_id: str) -> list[tuple[str, str]]:
        """POST/PUT/DELETE on the pool's members, one member or the batch."""
        prefix = f"/v2.0/lbaas/pools/{pool_id}/members"
        return [(method, path) for method, path in self.since_start()
                if method in ("POST", "PUT", "DELETE") and path.split("?")[0].startswith(prefix)]


@contextlib.contextmanager
def octavia_pool(conn: Any, name: str) -> Iterator[Any]:
    """A load balancer, HTTP listener and pool, all called ``name``, on the private subnet;
    yields the load balancer and deletes it (cascade) afterwards. Each write waits for the
    load balancer to be ACTIVE again, as Octavia requires."""
    subnet = next(iter(conn.network.subnets(name="private-subnet")), None) or next(
        iter(conn.network.subnets())
    )
    octavia = conn.load_balancer
    lb = octavia.create_load_balancer(name=name, vip_subnet_id=subnet.id)
    try:
        octavia.wait_for_load_balancer(lb.id, wait=120)
        listener = octavia.create_listener(
            name=name, loadbalancer_id=lb.id, protocol="HTTP", protocol_port=80
        )
        octavia.wait_for_load_balancer(lb.id, wait=120)
        octavia.create_pool(
            name=name, listener_id=listener.id, protocol="HTTP", lb_algorithm="ROUND_ROBIN"
        )
        octavia.wait_for_load_balancer(lb.id, wait=120)
        yield lb
    finally:
        # Octavia refuses (409) to delete a load balancer that is PENDING_UPDATE, as it is
        # right after a test's last member change; and a delete cut short by the harness
        # stopping leaves it PENDING_DELETE for good. So: wait, delete, wait until gone.
        octavia.wait_for_load_balancer(lb.id, wait=120, failures=["ERROR"])
        octavia.delete_load_balancer(lb.id, cascade=True)
        octavia.wait_for_delete(octavia.get_load_balancer(lb.id), wait=120)


def stop() -> list[str]:
    """Stop every process the harness started (pid files); returns the names stopped."""
    stopped = []
    for svc in [*reversed(ORDER), "mariadb"]:
        if stop_process(svc):
            stopped.append(svc)
    return stopped


def rss_mb() -> dict[str, float]:
    out = {}
    for svc in ["mariadb", *ORDER]:
        pid = running_pid(svc)
        if pid is None:
            continue
        total = 0
        pids = [pid]
        for p in Path("/proc").iterdir():  # children (gunicorn workers)
            if p.name.isdigit():
                try:
                    if int((p / "stat").read_text().split(")")[-1].split()[3]) == pid:
                        pids.append(int(p.name))
                except (OSError, ValueError, IndexError):
                    pass
        for p in pids:
            try:
                for line in Path(f"/proc/{p}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except OSError:
                pass
        out[svc] = total / 1024
    return out


def status() -> dict[str, dict]:
    res = {}
    rss = rss_mb()
    for svc in ["mariadb", *ORDER]:
        res[svc] = {
            "pid": running_pid(svc),
            "answers": answers(svc),
            "port": PORTS[svc],
            "rss_mb": round(rss.get(svc, 0.0), 1),
        }
    return res


def main(argv: list[str]) -> int:
    cmd = argv[1] if len(argv) > 1 else "status"
    if cmd == "install":
        install()
    elif cmd == "up":
        info = start()
        if not info.started:
            log("already running; reusing it")
        log(f"export OS_CLIENT_CONFIG_FILE={info.clouds_yaml}  # cloud: {info.cloud}")
    elif cmd == "down":
        stopped = stop()
        log(f"stopped: {', '.join(stopped) or 'nothing was running'}")
    elif cmd == "status":
        st = status()
        for svc, s in st.items():
            print(
                f"{svc:10s} port {s['port']:5d}  pid {s['pid'] or '-':>7}  "
                f"{'answers' if s['answers'] else 'DOWN':8s} rss {s['rss_mb']:7.1f} MB"
            )
        print(f"{'total':10s} rss {sum(s['rss_mb'] for s in st.values()):.0f} MB")
        return 0 if all(s["answers"] for s in st.values()) else 1
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""nova-api + conductor + scheduler + compute in ONE process (fake:// transport).

Run with the nova venv's python; OS_NOVA_CONFIG_DIR names the config dir, argv[1] the port.
"""

from nova import monkey_patch

monkey_patch.patch(backend="threading")

import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fakeshare  # noqa: E402,F401
import wsgiserve  # noqa: E402

port = int(sys.argv[1])
sys.argv = ["nova-api-os-compute"]

from nova.api.openstack import wsgi_app  # noqa: E402

app = wsgi_app.init_application("osapi_compute", "nova-api-os-compute")

from nova import service  # noqa: E402

services = []
for binary, topic in (
    ("nova-conductor", "conductor"),
    ("nova-scheduler", "scheduler"),
    ("nova-compute", "compute"),
):
    svc = service.Service.create(binary=binary, topic=topic)
    svc.start()
    services.append(svc)

wsgiserve.serve_in_thread(app, "127.0.0.1", port)
print(f"nova all-in-one serving on 127.0.0.1:{port}", flush=True)

stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *a: stop.set())
signal.signal(signal.SIGINT, lambda *a: stop.set())
stop.wait()
os._exit(0)

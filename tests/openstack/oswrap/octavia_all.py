"""octavia-api + controller worker (v2 consumer) in ONE process (fake:// transport).

Run with the octavia venv's python: octavia_all.py CONFIG PORT
"""

import os
import signal
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fakeshare  # noqa: F401
import wsgiserve

conf_file, port = sys.argv[1], int(sys.argv[2])
sys.argv = ["octavia-api", "--config-file", conf_file]

from octavia.api import app as api_app  # noqa: E402
from oslo_config import cfg  # noqa: E402

app = api_app.setup_app(argv=sys.argv)

import oslo_messaging as messaging  # noqa: E402
from octavia.common import constants, rpc  # noqa: E402
from octavia.controller.queue.v2 import endpoints  # noqa: E402
from oslo_messaging.rpc import dispatcher  # noqa: E402

target = messaging.Target(topic=constants.TOPIC_AMPHORA_V2, server=cfg.CONF.host, fanout=False)
listener = rpc.get_server(
    target, [endpoints.Endpoints()], access_policy=dispatcher.DefaultRPCAccessPolicy
)
listener.start()

wsgiserve.serve_in_thread(app, "127.0.0.1", port)
print(f"octavia all-in-one serving on 127.0.0.1:{port}", flush=True)

stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *a: stop.set())
signal.signal(signal.SIGINT, lambda *a: stop.set())
stop.wait()
os._exit(0)

"""A small threaded WSGI server (stdlib) for the all-in-one nova and octavia processes."""

import logging
import socketserver
import threading
from wsgiref import simple_server

LOG = logging.getLogger("phoenix.harness.wsgi")


class _Server(socketserver.ThreadingMixIn, simple_server.WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _Handler(simple_server.WSGIRequestHandler):
    def log_message(self, fmt, *args):
        LOG.info("%s %s", self.address_string(), fmt % args)


def serve_in_thread(app, host, port):
    srv = simple_server.make_server(host, port, app, server_class=_Server, handler_class=_Handler)
    t = threading.Thread(target=srv.serve_forever, name=f"wsgi-{port}", daemon=True)
    t.start()
    return srv

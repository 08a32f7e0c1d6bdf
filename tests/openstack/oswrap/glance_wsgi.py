"""Gunicorn entry for glance-api (glance 33 has no standalone server script)."""

import sys

sys.argv = [sys.argv[0]]
from glance.wsgi.api import application  # noqa: E402,F401

"""Gunicorn entry for placement."""

import sys

sys.argv = [sys.argv[0]]
from placement.wsgi.api import application  # noqa: E402,F401

"""Gunicorn entry for keystone: keystone parses sys.argv at import (it would read gunicorn's)."""

import sys

sys.argv = [sys.argv[0]]
from keystone.wsgi.api import application  # noqa: E402,F401

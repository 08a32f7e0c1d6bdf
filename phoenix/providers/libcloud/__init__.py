"""The libcloud provider: any cloud apache-libcloud drives, through its generic APIs.

Compute, load balancer, DNS and storage each name a libcloud driver in the spec
(``provider.options``); what a driver does differently from libcloud's generic API
(how tags are given, how listings page, how a multi-value record is written) lives in
``quirks.py`` alone. Credentials come from environment variables or a file, never from
the spec. See ``config.py`` for the options.
"""

from __future__ import annotations

from phoenix.providers.libcloud.provider import open_libcloud_provider

__all__ = ["open_libcloud_provider"]

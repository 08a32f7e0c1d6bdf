"""The local provider: real servers on this machine behind a real load balancer.

Each node is a fresh copy of a content-addressed image directory, with its own loopback
address (Linux routes all of 127.0.0.0/8 to ``lo``), its user-data applied as cloud-init
would, and its service supervised by a detached agent process. Each region's pool is a
real load balancer process (HAProxy when installed, otherwise a built-in asyncio proxy).
Everything lives in a state directory, so ``status``/``rollback``/``destroy`` run from
another process see the same cloud.
"""

"""An in-memory cloud that behaves like a real one, failures included.

Why it exists: the engine must be tested against a cloud that boots servers slowly,
loses responses, runs out of quota and loses whole regions, and those tests must run in
milliseconds and reproduce exactly. So this cloud ships in the package (like httpx's
``MockTransport``) and serves as the fake for every engine test, for dry runs and for
benchmarks. It follows every rule of ``phoenix.providers.base`` (the contract suite in
``tests/contract`` runs against it like against any other provider).

How it stays honest without threads:

* Time comes from a ``Clock``. A server is BUILD until ``boot_seconds`` (plus
  ``Faults.slow_boot_seconds``) have passed *by that clock*, then ACTIVE or ERROR; a
  deleted server is DELETING for ``delete_seconds``, then gone. Transitions are computed
  lazily whenever a call looks at the region, so a ``FakeClock`` makes boot instant.
* Failures come from ``Faults``. Each draw is a hash of the seed, the call and what it
  acts on (a server's name, a store key) and how many times that was drawn before, so a
  failing run replays exactly even when the executor's worker threads interleave their
  calls differently. ``api_error_rate`` fails a call *before* it acts;
  ``lost_response_rate`` fails a mutating call *after* it acted, which is what proves the
  engine idempotent (``lost_read_rate`` does the same to reads). ``Faults.windows`` hold
  faults in force for a span of the cloud's clock only: an outage that starts and ends
  mid-deploy, a node whose health flaps.
* One ``RLock`` guards everything: calls may come from the executor's worker threads.
* With a ``state_file`` the cloud lives in a JSON file, re-read when another process
  changed it and written atomically (tmp + ``os.replace``) under an ``fcntl`` lock file,
  so ``phoenix deploy`` and a later ``phoenix status`` see the same cloud.

* ``Latency`` makes the cloud as slow as a real one, for honest benchmarks: boot times
  spread over a range, a load balancer that is PENDING_UPDATE for a while after each
  member write and refuses writes meanwhile (Octavia's 409), and a request rate per
  service beyond which calls get 429 with Retry-After. All zero by default: instant.

``calls`` counts every Protocol call (failed ones too) by ``"<part>.<method>"``, so tests
and benchmarks can assert how much API traffic a deploy costs. The inspection helpers
(``servers``, ``members``, ``user_data``) are not counted and inject no faults.

Where things live: ``faults.py`` (``Faults``, ``FaultWindow``, ``Latency`` and the rate
limits), ``state.py`` (what the cloud holds, and its state-file JSON), ``core.py`` (the
call path and persistence), ``compute.py``, ``balancer.py``, ``store.py``, ``dns.py``,
``health.py`` (the Protocol parts), ``cloud.py`` (``MemoryCloud``) and ``provider.py``
(opening it from a spec's ``provider.options``).
"""

from __future__ import annotations

from phoenix.providers.memory.cloud import MemoryCloud
from phoenix.providers.memory.faults import Faults, FaultWindow, Latency
from phoenix.providers.memory.provider import open_memory_provider
from phoenix.providers.memory.state import DEFAULT_STATE_FILE

__all__ = [
    "DEFAULT_STATE_FILE",
    "FaultWindow",
    "Faults",
    "Latency",
    "MemoryCloud",
    "open_memory_provider",
]

"""Make every oslo.messaging fake:// driver instance in a process share one exchange manager.

The fake transport keeps its queues per driver instance; nova opens one transport per
cell (and octavia one per client/server), so without this, messages sent on one
instance are never seen by listeners on another. Relies on the private attribute
``FakeDriver._exchange_manager`` (oslo.messaging is pinned by the harness).
"""

from oslo_messaging._drivers import impl_fake

_MANAGERS: dict = {}
_orig_init = impl_fake.FakeDriver.__init__


def _shared_init(self, conf, url, default_exchange=None, allowed_remote_exmods=None):
    _orig_init(self, conf, url, default_exchange, allowed_remote_exmods)
    self._exchange_manager = _MANAGERS.setdefault(default_exchange, self._exchange_manager)


if not getattr(impl_fake.FakeDriver, "_phoenix_shared", False):
    impl_fake.FakeDriver.__init__ = _shared_init
    impl_fake.FakeDriver._phoenix_shared = True

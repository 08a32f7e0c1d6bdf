"""Provider backends behind the Protocols in ``phoenix.providers.base``."""

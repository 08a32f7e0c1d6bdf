"""The real-OpenStack tests use the session fixture ``openstack_cloud`` from
tests/conftest.py (shared with the provider contract suite)."""

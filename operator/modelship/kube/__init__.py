"""Adapters between the pure engine and the Kubernetes API (all the I/O lives here)."""

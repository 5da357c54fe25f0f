"""Transports carry client operations to a backend: in-process (embedded) or over HTTP."""

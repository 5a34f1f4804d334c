"""Embedded demo: a simulated prod-haproxy-shaped cluster behind a real loopback SSH server."""

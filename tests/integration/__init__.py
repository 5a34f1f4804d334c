"""Integration tests: real clients over loopback sockets to in-process servers."""

"""Servers: model servers a job starts on its node, and the loopback test server."""

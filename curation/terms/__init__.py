"""Licenses and terms: dataset licenses and the commercial allowlist, model licenses and
what they allow for outputs, and the commercial decision."""

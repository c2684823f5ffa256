"""Judges, reward scores, verification and filters."""

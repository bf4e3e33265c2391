"""Corpora of bad input: hostile requests and corrupted data files."""

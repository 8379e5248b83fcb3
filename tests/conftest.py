"""pytest configuration; shared paths live in helpers.py."""

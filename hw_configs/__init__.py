"""Bundled hardware descriptions (YAML), one per target."""

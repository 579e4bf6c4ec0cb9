"""The `trace` command."""

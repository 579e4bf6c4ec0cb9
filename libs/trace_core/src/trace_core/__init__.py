"""Trace's shared library: everything two or more services must agree on."""

"""Helpers shared by the tests, written independently of the library."""

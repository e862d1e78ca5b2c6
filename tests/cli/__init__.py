"""Tests of ebmlab.cli: the command line end to end and its handling of bad input."""

"""Tests of ebmlab.models: energies, conditionals and partition functions."""

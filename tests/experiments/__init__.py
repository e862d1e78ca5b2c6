"""Tests of ebmlab.experiments: recipes, run folders, resume, configs, reports."""

"""Tests of ebmlab.sklearn: the scikit-learn adapters."""

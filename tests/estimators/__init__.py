"""Tests of ebmlab.estimators: exact, AIS, RAISE, pseudo-likelihood."""

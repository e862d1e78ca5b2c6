"""Tests of ebmlab.metrics: FID, IS, KID, classification and MCMC diagnostics."""

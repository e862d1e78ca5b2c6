"""Tests of ebmlab.data: dataset readers, downloads, synthetic sets, transforms."""

"""ebmlab's test suite, one package per layer of src/ebmlab (see docs/reliability.md)."""

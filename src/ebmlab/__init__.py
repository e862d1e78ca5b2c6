"""ebmlab: hierarchical energy-based models in PyTorch.

Energies follow one sign convention throughout: ``p(x) = exp(-E(x)) / Z``,
so low energy means high probability.
"""

__version__ = "0.1.0"

"""Backbone networks: MLPs, a small CNN for 28x28/8x8 images, Inception-v3 in the FID layout."""

from ebmlab.models.nets.inception import FIDInceptionV3, load_inception
from ebmlab.models.nets.mlp import MLP, MLPEnergy
from ebmlab.models.nets.small_cnn import SmallCNN

__all__ = ["MLP", "FIDInceptionV3", "MLPEnergy", "SmallCNN", "load_inception"]

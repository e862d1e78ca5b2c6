"""Backbone networks: MLPs, a small CNN, a WideResNet without normalisation, FID Inception-v3."""

from ebmlab.models.nets.inception import FIDInceptionV3, load_inception
from ebmlab.models.nets.mlp import MLP, MLPEnergy
from ebmlab.models.nets.small_cnn import SmallCNN
from ebmlab.models.nets.wide_resnet import WideResNet

__all__ = ["MLP", "FIDInceptionV3", "MLPEnergy", "SmallCNN", "WideResNet", "load_inception"]

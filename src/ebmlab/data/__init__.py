"""Datasets by name, IDX, CIFAR and SVHN files, toy 2-D densities and data transforms.

>>> from ebmlab.data import load_dataset
>>> train = load_dataset("digits")            # 1,438 x 64, values in [0, 1]
>>> train.images.shape, train.n_classes
(torch.Size([1438, 64]), 10)
"""

from ebmlab.data.cifar import read_cifar_archive, read_cifar_file
from ebmlab.data.dataset import DataFormatError, Dataset, DatasetNotFoundError
from ebmlab.data.digits import DIGITS_SPLIT_SEED
from ebmlab.data.idx import IdxFormatError, read_idx, read_idx_header, write_idx
from ebmlab.data.ood import SYNTHETIC_OOD, ood_inputs, resize_images
from ebmlab.data.registry import dataset_info, list_datasets, load_dataset
from ebmlab.data.svhn import read_svhn_file
from ebmlab.data.synthetic import bars_and_stripes, bars_and_stripes_labels
from ebmlab.data.toy2d import TOY2D_NAMES, sample_toy2d
from ebmlab.data.transforms import (
    BINARIZATION_METHODS,
    binarize,
    check_data,
    prepare_binary,
    scale,
    train_validation_split,
)

__all__ = [
    "BINARIZATION_METHODS",
    "DIGITS_SPLIT_SEED",
    "SYNTHETIC_OOD",
    "TOY2D_NAMES",
    "DataFormatError",
    "Dataset",
    "DatasetNotFoundError",
    "IdxFormatError",
    "bars_and_stripes",
    "bars_and_stripes_labels",
    "binarize",
    "check_data",
    "dataset_info",
    "list_datasets",
    "load_dataset",
    "ood_inputs",
    "prepare_binary",
    "read_cifar_archive",
    "read_cifar_file",
    "read_idx",
    "read_idx_header",
    "read_svhn_file",
    "resize_images",
    "sample_toy2d",
    "scale",
    "train_validation_split",
    "write_idx",
]

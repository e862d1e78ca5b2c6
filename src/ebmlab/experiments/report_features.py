"""The feature space of the report's IS and FID, and what its numbers can be compared with.

An IS or FID is a number *in one feature network*. ebmlab ships small CNNs for
digits and Fashion-MNIST (:mod:`ebmlab.metrics.feature_nets`); their numbers say
which of two ebmlab models has the better samples, and nothing about a published
table. Only Inception-v3 with the weights file behind the published numbers
(pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``, supplied by the user:
ebmlab downloads nothing) gives numbers comparable with papers, and then only
at equal sample counts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

# Feature networks shipped for a dataset (FID and IS are only comparable within one).
FEATURE_NET_FOR_DATASET = {"fashion-mnist": "fashion-mnist-cnn", "digits": "digits-cnn"}
# pytorch-fid names its weights file after the first hex digits of the file's SHA-256
# (torch.hub's convention); a file whose hash starts otherwise holds other weights.
STANDARD_INCEPTION_SHA256_PREFIX = "6726825d"
IS_SPLITS = 10


def is_standard_inception(path: str | Path) -> bool:
    """Whether ``path`` is pytorch-fid's Inception-v3 weights file, by its SHA-256."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest().startswith(STANDARD_INCEPTION_SHA256_PREFIX)


@dataclass
class FeatureNet:
    """A loaded feature network, its name and a sentence on what its numbers compare with."""

    net: Any
    name: str
    comparability: str
    seconds_per_image: float | None = None  # measured on first use by the report


def shipped_net_note(name: str, info: dict[str, Any]) -> str:
    accuracy = info.get("test_accuracy")
    trained = f"trained on {info.get('dataset', '?')}"
    if isinstance(accuracy, float):
        trained += f", test accuracy {accuracy:.1%}"
    return (
        f"features of {name}, the small CNN shipped with ebmlab ({trained}): comparable only "
        "within ebmlab (same network, same sample count), not with published numbers"
    )


def inception_note(path: Path, standard: bool) -> str:
    if standard:
        return (
            f"features of Inception-v3 with the standard pytorch-fid weights ({path.name}): "
            "comparable to published numbers computed with these weights at the same sample "
            "count (published FIDs mostly use 50,000 samples)"
        )
    return (
        f"features of Inception-v3 with weights from {path.name}, which is not the standard "
        f"pytorch-fid file (its SHA-256 does not start with {STANDARD_INCEPTION_SHA256_PREFIX}): "
        "comparable only with numbers computed with the same file"
    )


class FeatureSpaces:
    """Feature networks per dataset and the real images' statistics, each loaded once.

    Parameters
    ----------
    inception_weights : path, optional
        An Inception-v3 weights file (:func:`~ebmlab.models.nets.inception.load_inception`);
        used for every dataset. Without it the shipped network of the dataset, if any.
    """

    def __init__(self, inception_weights: str | Path | None = None) -> None:
        self.inception_weights = None if inception_weights is None else Path(inception_weights)
        self._nets: dict[str, FeatureNet | None] = {}
        self._real: dict[tuple[str, str | None, str], Any] = {}

    def net_for(self, dataset: str) -> FeatureNet | None:
        """The network for ``dataset`` (None: ebmlab ships none and no Inception was given)."""
        key = "inception" if self.inception_weights is not None else dataset
        if key not in self._nets:
            self._nets[key] = self._load(dataset)
        return self._nets[key]

    def _load(self, dataset: str) -> FeatureNet | None:
        if self.inception_weights is not None:
            from ebmlab.models.nets.inception import load_inception

            net = load_inception(self.inception_weights)
            standard = is_standard_inception(self.inception_weights)
            return FeatureNet(
                net, net.feature_name, inception_note(self.inception_weights, standard)
            )
        from ebmlab.metrics import load_feature_net

        name = FEATURE_NET_FOR_DATASET.get(dataset)
        if name is None:
            return None
        net = load_feature_net(name)
        return FeatureNet(net, name, shipped_net_note(name, net.info))

    def loaded(self) -> list[FeatureNet]:
        """The networks the report has used so far."""
        return [net for net in self._nets.values() if net is not None]

    def real_images(self, dataset: str, data_dir: str | None) -> torch.Tensor:
        from ebmlab.data import load_dataset

        key = (dataset, data_dir, "images")
        if key not in self._real:
            self._real[key] = load_dataset(dataset, split="test", data_dir=data_dir).images
        return self._real[key]

    def real_statistics(
        self, dataset: str, data_dir: str | None, features: FeatureNet, *, progress: bool
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """Mean, covariance and count of the test split's features (computed once per dataset)."""
        from ebmlab.metrics.feature_nets import apply_in_batches
        from ebmlab.metrics.fid import statistics_from_features

        key = (dataset, data_dir, features.name)
        if key not in self._real:
            images = self.real_images(dataset, data_dir)
            rows = apply_in_batches(
                features.net.features, images, progress=progress, desc=f"{dataset} test features"
            )
            self._real[key] = (*statistics_from_features(rows), rows.shape[0])
        return self._real[key]


@dataclass(frozen=True)
class SampleQuality:
    """IS (mean and std over splits) and FID of one set of samples, with their notes."""

    inception_score: float
    std: float  # of the inception score over splits
    fid: float
    is_note: str
    fid_note: str
    classes_assigned: int | None = None  # distinct argmax classes of the feature net
    effective_classes: float | None = None  # exp(entropy) of that class histogram


def sample_quality(
    samples: torch.Tensor,
    real: tuple[np.ndarray, np.ndarray, int],
    features: FeatureNet,
    *,
    sampling: str,
    progress: bool,
    desc: str,
) -> SampleQuality:
    """IS and FID of ``samples`` against the real statistics, in ``features``' space.

    ``sampling`` says how the samples were drawn (count, steps, start); it opens
    both notes. The fake images pass the network once for its features (FID)
    and once for its logits (IS). What the numbers compare with is
    ``features.comparability``, said once per network rather than in every note.
    """
    from ebmlab.metrics import inception_score
    from ebmlab.metrics.diversity import class_coverage
    from ebmlab.metrics.feature_nets import apply_in_batches
    from ebmlab.metrics.fid import frechet_distance, statistics_from_features

    net = features.net
    fake = apply_in_batches(net.features, samples, progress=progress, desc=f"{desc} features")
    logits = apply_in_batches(net.logits, samples, progress=progress, desc=f"{desc} logits")
    probs = torch.softmax(logits, dim=1)
    splits = min(IS_SPLITS, samples.shape[0])
    score = inception_score(probs, splits=splits, classifier_name=features.name)
    mu_real, sigma_real, n_real = real
    distance = frechet_distance(mu_real, sigma_real, *statistics_from_features(fake))
    coverage = class_coverage(probs)
    is_note = (
        f"{sampling}; {features.name} classifier; +/- std over {splits} splits; it assigns "
        f"{coverage.classes_assigned} of {coverage.n_classes} classes to the samples "
        f"({coverage.effective_classes:.1f} effective)"
    )
    fid_note = (
        f"{sampling} vs {n_real} test images; {fake.shape[1]}-d {features.name} features; "
        "biased upward at small sample counts"
    )
    return SampleQuality(score.mean, score.std, distance, is_note, fid_note,
                         coverage.classes_assigned, coverage.effective_classes)  # fmt: skip


def no_feature_net(argument: str, dataset: str, hint: str = "") -> None:
    """Raise the one error of an ``argument`` that needs a shipped network ``dataset`` lacks."""
    known = ", ".join(FEATURE_NET_FOR_DATASET)
    raise ValueError(
        f"{argument} needs a dataset with a shipped feature network ({known}); "
        f"got {dataset!r}{hint}"
    )


def fresh_sample_quality(
    recipe: Any,
    n_samples: int,
    n_steps: int,
    *,
    seed: int = 0,
    progress: bool = True,
    spaces: FeatureSpaces | None = None,
    **sample_options: Any,
) -> dict[str, Any]:
    """IS and FID of ``n_samples`` fresh samples of an opened run, as ``ebmlab eval`` reports them.

    The samples are drawn by ``recipe.sample`` (``n_steps`` steps; a JEM starts in its
    replay buffer when it has one, else from noise, and the ``sampling`` entry says
    which) and scored against the test split in the dataset's feature space.
    Returns ``{"sample_quality": {...}}`` with ``inception_score``,
    ``inception_score_std``, ``fid``, ``classes_assigned`` and ``effective_classes``
    (:func:`~ebmlab.metrics.diversity.class_coverage`), ``n_samples``, ``n_steps``, ``sampling``,
    ``feature_net`` and ``comparability``.
    """
    from ebmlab.experiments import report_costs as costs

    try:
        recipe.image_shape()
    except ValueError:
        raise ValueError(
            f"sample_quality needs a model of images; {recipe.name!r} samples are not images"
        ) from None
    config, spaces = recipe.config, spaces or FeatureSpaces()
    dataset, data_dir = getattr(config, "dataset", ""), getattr(config, "data_dir", None)
    features = spaces.net_for(dataset)
    if features is None:
        no_feature_net("sample_quality", dataset, "; give an Inception-v3 weights file for others")
    generator = torch.Generator(device=recipe.device).manual_seed(seed)
    samples, description = costs.sample_in_batches(
        recipe, n_samples, n_steps, generator=generator, progress=progress,
        desc="sampling", **sample_options,
    )  # fmt: skip
    sampling = f"{n_samples} samples x {n_steps} {description}"
    real = spaces.real_statistics(dataset, data_dir, features, progress=progress)
    quality = sample_quality(
        samples, real, features, sampling=sampling, progress=progress, desc="samples"
    )
    return {
        "sample_quality": {
            "n_samples": n_samples,
            "n_steps": n_steps,
            "sampling": sampling,
            "feature_net": features.name,
            "inception_score": quality.inception_score,
            "inception_score_std": quality.std,
            "fid": quality.fid,
            "classes_assigned": quality.classes_assigned,
            "effective_classes": quality.effective_classes,
            "n_test": real[2],
            "comparability": features.comparability,
        }
    }

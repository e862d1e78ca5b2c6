"""What a JEM run logs about its sampler while it trains: the energy gap and a buffer FID.

JEM fails quietly when the classifier outruns its sampler: the negatives stop
looking like data while the loss looks fine. Two numbers show it as it happens:

- the **energy gap** :math:`\\bar E(x_{data}) - \\bar E(x_{neg})` over the logging
  window; near zero while SGLD keeps up, strongly negative once the model assigns
  the data far lower energy than anything the sampler reaches;
- the **buffer FID**: the Frechet distance between the shipped feature network's
  features of ``n`` replay-buffer samples and of ``n`` held-out test images
  (:func:`ebmlab.metrics.fid`); cheap, since the buffer's samples exist already.
"""

from __future__ import annotations

import torch

from ebmlab.experiments.report_features import FEATURE_NET_FOR_DATASET, no_feature_net
from ebmlab.samplers.replay_buffer import ReplayBuffer

BUFFER_FID_SAMPLES = 500


def energy_gap(record: dict) -> float | None:
    """``energy_data - energy_negative`` of a metrics record, None when either is absent."""
    data, negative = record.get("energy_data"), record.get("energy_negative")
    if not (isinstance(data, float) and isinstance(negative, float)):
        return None
    return data - negative


class BufferFID:
    """FID of replay-buffer slots against held-out images in the dataset's feature space.

    Parameters
    ----------
    dataset : str
        Names the shipped feature network (``digits``, ``fashion-mnist``).
    held_out : Tensor
        Test images scaled to [-1, 1], rows ``(N, D)``: the first ``n`` are used.
    n : int
        Buffer slots (spread evenly, so every class block of a class-conditional
        buffer is represented) and held-out images per estimate.
    """

    def __init__(self, dataset: str, held_out: torch.Tensor, *, n: int = BUFFER_FID_SAMPLES):
        from ebmlab.metrics import load_feature_net
        from ebmlab.metrics.fid import statistics_from_features

        name = FEATURE_NET_FOR_DATASET.get(dataset)
        if name is None:
            no_feature_net("fid_every", dataset)
        self.name, self.n = name, min(n, held_out.shape[0])
        self.net = load_feature_net(name)
        real = self._features(held_out[: self.n])
        self.real_mean, self.real_cov = statistics_from_features(real)

    def _features(self, symmetric: torch.Tensor) -> torch.Tensor:
        from ebmlab.metrics.feature_nets import apply_in_batches

        images = ((symmetric.detach().float().cpu() + 1) / 2).clamp(0, 1)
        return apply_in_batches(self.net.features, images, progress=False)

    def samples(self, buffer: ReplayBuffer) -> torch.Tensor:
        """The ``n`` buffer slots scored, spread evenly over the buffer, in [-1, 1]."""
        slots = torch.linspace(0, len(buffer.buffer) - 1, min(self.n, len(buffer.buffer)))
        return buffer.buffer[slots.long()]

    def __call__(self, buffer: ReplayBuffer) -> float:
        from ebmlab.metrics.fid import frechet_distance, statistics_from_features

        mean, cov = statistics_from_features(self._features(self.samples(buffer)))
        return frechet_distance(mean, cov, self.real_mean, self.real_cov)

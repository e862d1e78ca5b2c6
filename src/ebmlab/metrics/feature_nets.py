"""Feature networks for FID and the inception score, and how metrics call them.

A sample-quality number is only meaningful inside one feature space: an FID
computed with the Fashion-MNIST CNN cannot be compared with one computed with
Inception-v3, or with another training run of the same CNN. Every result in
:mod:`ebmlab.metrics` therefore records the ``feature_name`` of the network
that produced it.

Shipped networks (trained by ``scripts/train_feature_net.py``, weights in
``ebmlab/metrics/weights/``, a JSON sidecar beside each):

- ``"fashion-mnist-cnn"``: :class:`~ebmlab.models.nets.small_cnn.SmallCNN` on
  28x28 Fashion-MNIST;
- ``"digits-cnn"``: the same architecture on scikit-learn's 8x8 digits.

Both expect images in [0, 1] (grayscale or binarised), shaped ``(N, 1, H, W)``
or flattened ``(N, H*W)``. Inception-v3 is loaded from a user-supplied file
with :func:`ebmlab.models.nets.inception.load_inception`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable, Iterator
from importlib import resources
from typing import Any

import numpy as np
import torch
from torch import nn

from ebmlab._validation import check_choice, check_positive_int
from ebmlab.models.nets.small_cnn import SmallCNN

FEATURE_NETS = ("fashion-mnist-cnn", "digits-cnn")


def _weights_file(name: str, suffix: str):
    return resources.files("ebmlab.metrics").joinpath("weights", f"{name}{suffix}")


def feature_net_info(name: str) -> dict[str, Any]:
    """The JSON sidecar of a shipped network: architecture, test accuracy, provenance."""
    check_choice("name", name, FEATURE_NETS)
    return json.loads(_weights_file(name, ".json").read_text(encoding="utf-8"))


def load_feature_net(name: str, *, map_location: str | torch.device = "cpu") -> SmallCNN:
    """Load a shipped feature network, in eval mode.

    Parameters
    ----------
    name : {"fashion-mnist-cnn", "digits-cnn"}
        Which network.
    map_location
        Device for the parameters.

    Returns
    -------
    SmallCNN
        With ``feature_name`` (the name recorded in metric results) and
        ``info`` (the sidecar dict) attributes. ``net.features(x)`` gives the
        penultimate-layer features used by FID/KID, ``net.logits(x)`` the
        logits used by the inception score.
    """
    from safetensors.torch import load

    info = feature_net_info(name)
    net = SmallCNN(**info["config"])
    state = load(_weights_file(name, ".safetensors").read_bytes())
    net.load_state_dict(state)
    net.feature_name = info["name"]
    net.info = info
    return net.to(map_location).eval()


def resolve_name(fn: object, name: str | None) -> str:
    """The feature-space name to record: ``name`` if given, else ``fn.feature_name``."""
    if name is not None:
        return str(name)
    for owner in (fn, getattr(fn, "__self__", None)):
        found = getattr(owner, "feature_name", None)
        if isinstance(found, str):
            return found
    qualname = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return f"unnamed:{qualname}"


def resolve_method(fn: object, method: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """``fn.<method>`` when ``fn`` has such a method (a feature network), else ``fn`` itself."""
    bound = getattr(fn, method, None)
    if callable(bound) and not isinstance(bound, nn.Module):
        return bound
    if not callable(fn):
        raise TypeError(
            f"feature network must be callable or have a .{method}() method; "
            f"got {type(fn).__name__}"
        )
    return fn  # type: ignore[return-value]


def _module_of(fn: object) -> nn.Module | None:
    owner = fn if isinstance(fn, nn.Module) else getattr(fn, "__self__", None)
    return owner if isinstance(owner, nn.Module) else None


@contextlib.contextmanager
def _eval_mode(module: nn.Module | None) -> Iterator[None]:
    # Metrics must not depend on batch composition (batch norm, dropout), yet a
    # caller's training/eval flag is theirs: switch to eval and put it back.
    if module is None:
        yield
        return
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def _batches(data: object, batch_size: int) -> tuple[Iterable[torch.Tensor], int | None]:
    if isinstance(data, np.ndarray):
        data = torch.from_numpy(data)
    if isinstance(data, torch.Tensor):
        return data.split(batch_size), data.shape[0]
    if isinstance(data, Iterable):
        # (images, labels) pairs from a DataLoader: keep the images.
        batches = (b[0] if isinstance(b, tuple | list) else b for b in data)
        return batches, None
    raise TypeError(
        f"images must be a Tensor, an ndarray or an iterable of batches; got {type(data).__name__}"
    )


def _to_input(batch: torch.Tensor, param: torch.Tensor | None) -> torch.Tensor:
    if not isinstance(batch, torch.Tensor):
        raise TypeError(f"each batch of images must be a Tensor; got {type(batch).__name__}")
    if param is not None:
        return batch.to(device=param.device, dtype=param.dtype)
    return batch if batch.is_floating_point() else batch.float()


def apply_in_batches(
    fn: Callable[[torch.Tensor], torch.Tensor],
    data: object,
    *,
    batch_size: int = 256,
    progress: bool = True,
    desc: str = "features",
) -> torch.Tensor:
    """Apply ``fn`` to ``data`` batch by batch, without gradients; float64 rows on the CPU.

    ``data`` is a tensor/ndarray (split into ``batch_size`` rows) or an
    iterable of batches (tensors or ``(images, labels)`` pairs). Batches are
    moved to the device of ``fn``'s module, if it has one.
    """
    from tqdm.auto import tqdm

    check_positive_int("batch_size", batch_size)
    module = _module_of(fn)
    param = next(module.parameters(), None) if module is not None else None
    batches, total = _batches(data, batch_size)
    outputs = []
    with torch.no_grad(), _eval_mode(module):
        with tqdm(total=total, desc=desc, unit="img", disable=not progress, leave=False) as bar:
            for batch in batches:
                batch = _to_input(batch, param)
                out = fn(batch)
                if (
                    not isinstance(out, torch.Tensor)
                    or out.ndim != 2
                    or out.shape[0] != batch.shape[0]
                ):
                    shape = (
                        tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                    )
                    raise ValueError(
                        f"feature network must return (batch, features) rows; got {shape}"
                    )
                outputs.append(out.detach().to("cpu", torch.float64))
                bar.update(batch.shape[0])
    if not outputs:
        raise ValueError("images must contain at least one batch; got none")
    return torch.cat(outputs)


def paired_features(
    real: object, fake: object, feature_fn: object, *, batch_size: int, progress: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features of two image sets with ``feature_fn.features`` (or ``feature_fn``); same width."""
    extract = resolve_method(feature_fn, "features")
    real_features = apply_in_batches(
        extract, real, batch_size=batch_size, progress=progress, desc="real"
    )
    fake_features = apply_in_batches(
        extract, fake, batch_size=batch_size, progress=progress, desc="fake"
    )
    if real_features.shape[1] != fake_features.shape[1]:
        raise ValueError(
            f"feature_fn gave {real_features.shape[1]} features for real images but "
            f"{fake_features.shape[1]} for fake ones"
        )
    return real_features, fake_features

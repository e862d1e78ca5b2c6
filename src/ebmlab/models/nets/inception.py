"""Inception-v3 in the "FID Inception" layout used by pytorch-fid.

Only the architecture lives here. ebmlab never downloads weights: a user who
has the pytorch-fid weights file (``pt_inception-2015-12-05-*.pth``, a port of
the TensorFlow graph behind the published FID numbers) passes its path to
:func:`load_inception`. Parameter names follow torchvision's ``Inception3``
(without the auxiliary classifier), which is what that file contains.

The FID layout differs from torchvision's ImageNet Inception-v3 in four
pooling layers, reproducing the TensorFlow graph: the average pools of the
A, C and first E blocks exclude padding from the mean, and the last E block
(Mixed_7c) uses a max pool in its pool branch. The classifier has 1008
outputs (the TensorFlow graph's class count).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ebmlab._validation import check_choice, check_positive_int

INCEPTION_FEATURES = 2048
INCEPTION_SIZE = 299


class BasicConv2d(nn.Module):
    """Convolution without bias, batch norm (eps 1e-3, as in TensorFlow), ReLU."""

    def __init__(self, in_channels: int, out_channels: int, **conv_kwargs) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **conv_kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool(x: torch.Tensor) -> torch.Tensor:
    # count_include_pad=False: TensorFlow averages over the valid pixels only.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    """35x35 block: 1x1, 5x5, double 3x3 and pooled branches."""

    def __init__(self, in_channels: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(_avg_pool(x))
        return torch.cat([b1, b5, b3, bp], dim=1)


class InceptionB(nn.Module):
    """Grid reduction 35 -> 17: strided 3x3, strided double 3x3, max pool."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3(x)
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([b3, bd, bp], dim=1)


class InceptionC(nn.Module):
    """17x17 block with factorised 7x7 convolutions (1x7 then 7x1)."""

    def __init__(self, in_channels: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        row, col = (
            {"kernel_size": (1, 7), "padding": (0, 3)},
            {"kernel_size": (7, 1), "padding": (3, 0)},
        )
        self.branch1x1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, **row)
        self.branch7x7_3 = BasicConv2d(c7, 192, **col)
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, **col)
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, **row)
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, **col)
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, **row)
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = self.branch7x7dbl_1(x)
        for layer in (
            self.branch7x7dbl_2,
            self.branch7x7dbl_3,
            self.branch7x7dbl_4,
            self.branch7x7dbl_5,
        ):
            bd = layer(bd)
        bp = self.branch_pool(_avg_pool(x))
        return torch.cat([b1, b7, bd, bp], dim=1)


class InceptionD(nn.Module):
    """Grid reduction 17 -> 8: strided 3x3, 7x7-then-strided-3x3, max pool."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_1(x)
        for layer in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b7 = layer(b7)
        bp = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([b3, b7, bp], dim=1)


class InceptionE(nn.Module):
    """8x8 block with split 1x3/3x1 branches; ``pool`` is "avg" (Mixed_7b) or "max" (Mixed_7c)."""

    def __init__(self, in_channels: int, *, pool: str) -> None:
        super().__init__()
        self.pool = check_choice("pool", pool, ("avg", "max"))
        self.branch1x1 = BasicConv2d(in_channels, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], dim=1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], dim=1)
        # The TensorFlow graph's last block max-pools here; pytorch-fid keeps that quirk.
        pooled = _avg_pool(x) if self.pool == "avg" else F.max_pool2d(x, 3, stride=1, padding=1)
        return torch.cat([b1, b3, bd, self.branch_pool(pooled)], dim=1)


class FIDInceptionV3(nn.Module):
    r"""Inception-v3 (FID layout): 2048-d pool features and 1008 logits.

    Parameters
    ----------
    n_classes : int
        Outputs of the final linear layer (1008 in the FID weights file).
    resize_input : bool
        Resize inputs bilinearly to 299x299 first (as pytorch-fid does).
    feature_name : str
        Recorded in every FID/IS result computed with this network.

    Notes
    -----
    Inputs are images in [0, 1] of shape ``(N, 3, H, W)`` or ``(N, 1, H, W)``
    (grayscale is repeated over three channels); they are scaled to [-1, 1],
    the range the TensorFlow graph was trained on. Without resizing, inputs
    must be at least 75x75, the smallest size the strided layers accept.
    Batch-norm layers use their running statistics: call ``eval()`` (as
    :func:`load_inception` does) before extracting features.

    References
    ----------
    Szegedy, C. et al. (2016). Rethinking the Inception architecture for
    computer vision. CVPR. Heusel, M. et al. (2017). GANs trained by a two
    time-scale update rule converge to a local Nash equilibrium. NeurIPS.
    """

    def __init__(
        self,
        n_classes: int = 1008,
        *,
        resize_input: bool = True,
        feature_name: str = "inception-v3-fid",
    ) -> None:
        super().__init__()
        self.n_classes = check_positive_int("n_classes", n_classes)
        self.resize_input = bool(resize_input)
        self.feature_name = feature_name
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, pool="avg")
        self.Mixed_7c = InceptionE(2048, pool="max")
        self.fc = nn.Linear(INCEPTION_FEATURES, n_classes)

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(
                f"x must have shape (N, 3, H, W) or (N, 1, H, W); got {tuple(x.shape)}"
            )
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if self.resize_input:
            x = F.interpolate(
                x, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False
            )
        elif min(x.shape[2:]) < 75:
            raise ValueError(f"x must be at least 75x75 without resize_input; got {tuple(x.shape)}")
        return 2.0 * x - 1.0

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """2048-d average-pooled activations of Mixed_7c (the FID features)."""
        x = self._prepare(x)
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (for the inception score)."""
        return self.fc(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pool features (same as :meth:`features`), as pytorch-fid's wrapper returns."""
        return self.features(x)


def load_inception(
    path: str | Path, *, resize_input: bool = True, map_location: str | torch.device = "cpu"
) -> FIDInceptionV3:
    """Build :class:`FIDInceptionV3` from a user-supplied weights file, in eval mode.

    Parameters
    ----------
    path : str or Path
        A ``.pth``/``.pt`` state dict (e.g. pytorch-fid's
        ``pt_inception-2015-12-05-6726825d.pth``) or a ``.safetensors`` file.
        Keys of torchvision's auxiliary classifier (``AuxLogits.*``) are ignored.
    resize_input : bool
        See :class:`FIDInceptionV3`.
    map_location
        Device to load the tensors onto.

    Returns
    -------
    FIDInceptionV3
        With ``feature_name`` set to ``"inception-v3-fid:<file name>"``, so
        that results name the exact weights they were computed with.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"path must be an Inception-v3 weights file; {str(path)!r} does not exist"
        )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path), device=str(map_location))
    else:
        # weights_only=True: a state dict needs no pickled code, and untrusted files can hold some.
        state = torch.load(path, map_location=map_location, weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith("AuxLogits.")}
    if "fc.weight" not in state:
        raise ValueError(
            f"path {str(path)!r} holds no 'fc.weight'; expected an Inception-v3 state dict"
        )
    model = FIDInceptionV3(
        n_classes=state["fc.weight"].shape[0],
        resize_input=resize_input,
        feature_name=f"inception-v3-fid:{path.name}",
    )
    missing, unexpected = model.load_state_dict(state, strict=False)
    # Files ported from TensorFlow carry no batch-norm step counters; those buffers are unused here.
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(
            f"path {str(path)!r} does not match the FID Inception-v3 layout: "
            f"missing keys {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected keys {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
    return model.to(map_location).eval()

"""Spleeter's U-Net in PyTorch, layer for layer, and the mapping from its TensorFlow checkpoints.

Spleeter (Deezer, 2019) estimates one magnitude spectrogram per stem with one U-Net per stem, all
reading the same mixture spectrogram ``[batch, T=512 frames, F bins, 2 channels]``. Every quirk of
``spleeter/model/functions/unet.py`` is kept, because the official weights were trained with them:

* six 5x5 stride-2 convolutions (16, 32, 64, 128, 256, 512 filters) with TensorFlow "same"
  padding, which pads one more row/column *after* than before when the size is even;
* batch norm (epsilon 1e-3) then the activation after each, but the **skip connections carry the
  raw convolution outputs**, and the sixth block's batch norm and activation are computed and
  thrown away (the decoder starts from the raw sixth convolution);
* decoder blocks are transposed convolution -> activation -> batch norm (the opposite order),
  with dropout after the first three (inactive at inference);
* LeakyReLU(0.2) encoder / ReLU decoder for 2 stems, ELU / ELU for 4 and 5 stems;
* a last 4x4 convolution with dilation 2 to two channels: a sigmoid mask multiplied with the
  input (``unet.unet``), or logits that a softmax across stems turns into masks
  (``unet.softmax_unet``, the 5-stem model).

Tensors are kept in PyTorch's layout ``[batch, channels, T, F]`` (TensorFlow's is
``[batch, T, F, channels]``); kernels are transposed when loaded.

Keras names layers in creation order across all stems, so stem ``i`` (in the model's
instrument order) owns ``conv2d_{7i..7i+6}``, ``conv2d_transpose_{6i..6i+5}`` and
``batch_normalization_{12i..12i+11}`` (``_0`` is written without suffix).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from stylecraft.errors import CheckpointError, ConfigError

__all__ = [
    "SPLEETER_MODELS",
    "SpleeterNet",
    "SpleeterSpec",
    "spec_from_spleeter_config",
    "load_tf_checkpoint",
]

_BN_EPS = 1e-3  # Keras BatchNormalization default


@dataclass(frozen=True)
class SpleeterSpec:
    """Everything that defines a Spleeter model besides its weights (Spleeter's JSON params)."""

    name: str
    instruments: tuple[str, ...]
    sample_rate: int = 44100
    frame_length: int = 4096
    frame_step: int = 1024
    T: int = 512
    F: int = 1024
    n_channels: int = 2
    separation_exponent: float = 2.0
    mask_extension: str = "zeros"  # or "average"
    conv_activation: str = "LeakyReLU"  # Spleeter's default when params give none
    deconv_activation: str = "ReLU"
    softmax: bool = False  # unet.softmax_unet
    conv_n_filters: tuple[int, ...] = field(default=(16, 32, 64, 128, 256, 512))

    def __post_init__(self) -> None:
        problems = []
        if len(self.conv_n_filters) != 6:
            problems.append(f"conv_n_filters needs 6 values, got {len(self.conv_n_filters)}")
        if self.mask_extension not in ("zeros", "average"):
            problems.append(f"mask_extension must be 'zeros' or 'average', got {self.mask_extension!r}")
        if not 0 < self.F <= self.frame_length // 2 + 1:
            problems.append(f"F={self.F} must be in 1..{self.frame_length // 2 + 1}")
        if self.T % 64 or self.F % 64:
            problems.append("T and F must be multiples of 64 (six stride-2 layers)")
        if self.frame_length % self.frame_step:
            problems.append("frame_length must be a multiple of frame_step")
        if self.n_channels != 2:
            problems.append("Spleeter models are stereo (n_channels 2)")
        if not self.instruments:
            problems.append("instrument_list is empty")
        if problems:
            raise ConfigError(f"Spleeter model {self.name!r}: " + "; ".join(problems))

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["instruments"] = list(self.instruments)
        d["conv_n_filters"] = list(self.conv_n_filters)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SpleeterSpec:
        d = dict(d)
        d["instruments"] = tuple(d["instruments"])
        d["conv_n_filters"] = tuple(d["conv_n_filters"])
        return cls(**d)


def _released(name: str, instruments: Sequence[str], elu: bool, softmax: bool, F_bins: int) -> SpleeterSpec:
    act = ("ELU", "ELU") if elu else ("LeakyReLU", "ReLU")
    return SpleeterSpec(
        name=name,
        instruments=tuple(instruments),
        F=F_bins,
        conv_activation=act[0],
        deconv_activation=act[1],
        softmax=softmax,
    )


_STEMS = {
    "2stems": (("vocals", "accompaniment"), False, False),
    "4stems": (("vocals", "drums", "bass", "other"), True, False),
    "5stems": (("vocals", "piano", "drums", "bass", "other"), True, True),
}
#: The released models, as ``spleeter/resources/<name>.json`` defines them. The ``-16kHz``
#: variants use the same weights with F = 1536 bins (up to 16.5 kHz instead of 11 kHz).
SPLEETER_MODELS: dict[str, SpleeterSpec] = {}
for _name, (_inst, _elu, _soft) in _STEMS.items():
    SPLEETER_MODELS[_name] = _released(_name, _inst, _elu, _soft, 1024)
    SPLEETER_MODELS[f"{_name}-16kHz"] = _released(f"{_name}-16kHz", _inst, _elu, _soft, 1536)


def spec_from_spleeter_config(config: dict[str, Any], name: str = "custom") -> SpleeterSpec:
    """Build a spec from a Spleeter JSON params dict (the ``-p`` file of ``spleeter train``).

    Raises:
        ConfigError: missing keys or a model type other than ``unet.unet`` / ``unet.softmax_unet``.
    """
    try:
        model = config.get("model") or {}
        model_type = model.get("type", "unet.unet")
        params = model.get("params") or {}
        if model_type not in ("unet.unet", "unet.softmax_unet"):
            raise ConfigError(
                f"Spleeter model type {model_type!r} is not supported (unet.unet, unet.softmax_unet)"
            )
        conv = str(params.get("conv_activation"))
        deconv = str(params.get("deconv_activation"))
        return SpleeterSpec(
            name=name,
            instruments=tuple(config["instrument_list"]),
            sample_rate=int(config["sample_rate"]),
            frame_length=int(config["frame_length"]),
            frame_step=int(config["frame_step"]),
            T=int(config["T"]),
            F=int(config["F"]),
            n_channels=int(config["n_channels"]),
            separation_exponent=float(config["separation_exponent"]),
            mask_extension=str(config["mask_extension"]),
            # Spleeter's rule: anything but "ReLU"/"ELU" is LeakyReLU(0.2) in the encoder, and
            # anything but "LeakyReLU"/"ELU" is ReLU in the decoder.
            conv_activation=conv if conv in ("ReLU", "ELU") else "LeakyReLU",
            deconv_activation=deconv if deconv in ("LeakyReLU", "ELU") else "ReLU",
            softmax=model_type == "unet.softmax_unet",
            conv_n_filters=tuple(int(v) for v in params.get("conv_n_filters", (16, 32, 64, 128, 256, 512))),
        )
    except KeyError as exc:
        raise ConfigError(f"Spleeter config misses key {exc.args[0]!r}") from None


def _activation(name: str) -> nn.Module:
    # In place: every activation here applies to a fresh batch-norm or convolution output that
    # nothing else reads, so no copy is needed.
    if name == "ELU":
        return nn.ELU(inplace=True)
    if name == "ReLU":
        return nn.ReLU(inplace=True)
    return nn.LeakyReLU(0.2, inplace=True)


def _same_pad(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow "SAME" padding (before, after): the extra pixel goes after."""
    effective = (kernel - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


class _ConvSame(nn.Conv2d):
    """Conv2d with TensorFlow's asymmetric "same" padding."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kh, kw = self.kernel_size
        th, tw = _same_pad(x.shape[-2], kh, self.stride[0], self.dilation[0])
        fh, fw = _same_pad(x.shape[-1], kw, self.stride[1], self.dilation[1])
        return super().forward(F.pad(x, (fh, fw, th, tw)))


class _ConvTransposeSame(nn.ConvTranspose2d):
    """ConvTranspose2d with TensorFlow's "same" output (size x stride), cropped as TF does.

    The last decoder layer (5x5, stride 2, to a single channel, on the largest feature maps) is
    computed as one 3x3 convolution with four output channels, one per output phase (even/odd
    row x even/odd column), followed by a pixel shuffle: the same sums of the same products. On
    CPU (oneDNN, channels-last) that took half the time of PyTorch's transposed convolution for
    this shape, while for the wider layers the transposed convolution was 10-25% faster, so only
    this layer uses it.
    """

    _poly: tuple[tuple[int, int, int], torch.Tensor, torch.Tensor] | None = None

    def _polyphase(self) -> tuple[torch.Tensor, torch.Tensor]:
        w = self.weight  # [in, out, 5, 5]
        key = (w.data_ptr(), w._version, w.device.index or 0)
        if self._poly is None or self._poly[0] != key:
            cin, cout = w.shape[:2]
            k = w.new_zeros(cout, 4, cin, 3, 3)
            # Output row 2q (after TF's crop of one leading row) sums taps 3, 1 over input rows
            # q-1, q; row 2q+1 sums taps 4, 2, 0 over rows q-1, q, q+1. Same for columns.
            taps = {0: (3, 1), 1: (4, 2, 0)}
            with torch.no_grad():
                for sh in (0, 1):
                    for sw in (0, 1):
                        for a, th in enumerate(taps[sh]):
                            for b, tw in enumerate(taps[sw]):
                                k[:, sh * 2 + sw, :, a, b] = w[:, :, th, tw].T
            bias = self.bias if self.bias is not None else w.new_zeros(cout)
            self._poly = (key, k.reshape(cout * 4, cin, 3, 3), bias.detach().repeat_interleave(4))
        return self._poly[1], self._poly[2]

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        if self.out_channels == 1 and self.kernel_size == (5, 5) and self.stride == (2, 2) and not torch.is_grad_enabled():
            k, b = self._polyphase()
            return F.pixel_shuffle(F.conv2d(x, k, b, padding=1), 2)
        h, w = x.shape[-2:]
        full = super().forward(x)  # [(h-1)s + k, (w-1)s + k]
        s = self.stride[0]
        th, _ = _same_pad(h * s, self.kernel_size[0], s)
        tw, _ = _same_pad(w * s, self.kernel_size[1], s)
        return full[..., th : th + h * s, tw : tw + w * s]


class SpleeterUNet(nn.Module):
    """One stem's U-Net: mixture magnitude ``[B, 2, T, F]`` -> mask (or mask logits) ``[B, 2, T, F]``."""

    def __init__(self, spec: SpleeterSpec) -> None:
        super().__init__()
        f = spec.conv_n_filters
        ins = (spec.n_channels, *f[:-1])
        self.enc = nn.ModuleList(_ConvSame(i, o, 5, stride=2) for i, o in zip(ins, f, strict=True))
        self.enc_bn = nn.ModuleList(nn.BatchNorm2d(o, eps=_BN_EPS) for o in f)
        # Decoder inputs: conv6, then [skip conv_k ; up] concatenations.
        dec_out = (f[4], f[3], f[2], f[1], f[0], 1)
        dec_in = (f[5], 2 * f[4], 2 * f[3], 2 * f[2], 2 * f[1], 2 * f[0])
        self.dec = nn.ModuleList(
            _ConvTransposeSame(i, o, 5, stride=2) for i, o in zip(dec_in, dec_out, strict=True)
        )
        self.dec_bn = nn.ModuleList(nn.BatchNorm2d(o, eps=_BN_EPS) for o in dec_out)
        self.last = _ConvSame(1, spec.n_channels, 4, dilation=2)
        self.conv_act = _activation(spec.conv_activation)
        self.deconv_act = _activation(spec.deconv_activation)
        self.dropout = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the mask logits ``[B, 2, T, F]`` (the caller applies sigmoid or softmax)."""
        skips = []
        h = x
        for i, (conv, bn) in enumerate(zip(self.enc, self.enc_bn, strict=True)):
            c = conv(h)
            skips.append(c)  # raw convolution output: Spleeter's skip connections
            if i < 5:
                h = self.conv_act(bn(c))
            # block 6: its batch norm and activation feed nothing; skipped
        h = skips[5]
        for j, (deconv, bn) in enumerate(zip(self.dec, self.dec_bn, strict=True)):
            h = bn(self.deconv_act(deconv(h)))
            if j < 3:
                h = self.dropout(h)
            if j < 5:
                h = torch.cat([skips[4 - j], h], dim=1)
        return self.last(h)


class SpleeterNet(nn.Module):
    """All stems: mixture magnitude ``[B, 2, T, F]`` -> estimated stem magnitudes ``[S, B, 2, T, F]``."""

    def __init__(self, spec: SpleeterSpec) -> None:
        super().__init__()
        self.spec = spec
        self.unets = nn.ModuleList(SpleeterUNet(spec) for _ in spec.instruments)

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        logits = torch.stack([u(mix) for u in self.unets])  # [S, B, 2, T, F]
        masks = torch.softmax(logits, dim=0) if self.spec.softmax else torch.sigmoid(logits)
        return masks * mix


def _tf_name(kind: str, index: int) -> str:
    return kind if index == 0 else f"{kind}_{index}"


def _tf_layer_map(spec: SpleeterSpec) -> dict[str, tuple[str, str]]:
    """Map PyTorch parameter names -> (TF variable name, kind of transpose)."""
    out: dict[str, tuple[str, str]] = {}
    for s in range(len(spec.instruments)):
        p = f"unets.{s}."
        for j in range(6):
            conv = _tf_name("conv2d", 7 * s + j)
            out[p + f"enc.{j}.weight"] = (f"{conv}/kernel", "conv")
            out[p + f"enc.{j}.bias"] = (f"{conv}/bias", "")
            deconv = _tf_name("conv2d_transpose", 6 * s + j)
            out[p + f"dec.{j}.weight"] = (f"{deconv}/kernel", "deconv")
            out[p + f"dec.{j}.bias"] = (f"{deconv}/bias", "")
            for bn_list, offset in (("enc_bn", 0), ("dec_bn", 6)):
                bn = _tf_name("batch_normalization", 12 * s + offset + j)
                out[p + f"{bn_list}.{j}.weight"] = (f"{bn}/gamma", "")
                out[p + f"{bn_list}.{j}.bias"] = (f"{bn}/beta", "")
                out[p + f"{bn_list}.{j}.running_mean"] = (f"{bn}/moving_mean", "")
                out[p + f"{bn_list}.{j}.running_var"] = (f"{bn}/moving_variance", "")
        last = _tf_name("conv2d", 7 * s + 6)
        out[p + "last.weight"] = (f"{last}/kernel", "conv")
        out[p + "last.bias"] = (f"{last}/bias", "")
    return out


_CONV_RE = re.compile(r"^conv2d(?:_(\d+))?/kernel$")


def load_tf_checkpoint(path: Any, spec: SpleeterSpec) -> dict[str, torch.Tensor]:
    """Read a Spleeter TensorFlow checkpoint into a ``SpleeterNet`` state dict.

    Checks that the checkpoint has one U-Net per stem of ``spec`` and the filter sizes it
    expects, so a 2-stem checkpoint cannot be loaded as a 4-stem model.

    Raises:
        CheckpointError: not a Spleeter checkpoint, wrong stem count, wrong shapes.
    """
    from stylecraft.separate.tf_checkpoint import TFCheckpoint

    ckpt = TFCheckpoint(path)
    names = ckpt.names()
    n_conv = sum(1 for n in names if _CONV_RE.match(n))
    n_deconv = sum(1 for n in names if re.match(r"^conv2d_transpose(?:_\d+)?/kernel$", n))
    if n_conv == 0 or n_conv % 7 or n_deconv != 6 * (n_conv // 7):
        sample = ", ".join([n for n in names if "/" in n and "Adam" not in n][:4]) or "no variables"
        raise CheckpointError(
            f"{ckpt.prefix} is not a Spleeter U-Net checkpoint ({n_conv} conv2d and {n_deconv} "
            f"conv2d_transpose layers; found e.g. {sample})"
        )
    stems = n_conv // 7
    if stems != len(spec.instruments):
        raise CheckpointError(
            f"{ckpt.prefix} holds {stems} U-Net(s), so a {stems}-stem model, but {spec.name!r} "
            f"separates {len(spec.instruments)} stems ({', '.join(spec.instruments)})"
        )
    state: dict[str, torch.Tensor] = {}
    for torch_name, (tf_name, kind) in _tf_layer_map(spec).items():
        if tf_name not in ckpt:
            raise CheckpointError(f"{ckpt.prefix}: variable {tf_name!r} missing (needed for {torch_name})")
        value = ckpt.read(tf_name)
        if kind in ("conv", "deconv"):
            # TF conv: [kh, kw, in, out] -> torch [out, in, kh, kw]
            # TF conv transpose: [kh, kw, out, in] -> torch [in, out, kh, kw]
            value = np.ascontiguousarray(value.transpose(3, 2, 0, 1))
        state[torch_name] = torch.from_numpy(value.astype(np.float32, copy=False))
    return state


def check_state_shapes(net: SpleeterNet, state: dict[str, torch.Tensor], origin: str) -> None:
    """Raise a ``CheckpointError`` naming the first tensor whose shape does not fit ``net``."""
    expected = net.state_dict()
    for name, tensor in expected.items():
        if name.endswith("num_batches_tracked"):
            continue
        if name not in state:
            raise CheckpointError(f"{origin}: tensor {name} missing")
        if tuple(state[name].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{origin}: {name} has shape {tuple(state[name].shape)}, model {net.spec.name!r} "
                f"expects {tuple(tensor.shape)} (conv_n_filters {list(net.spec.conv_n_filters)})"
            )

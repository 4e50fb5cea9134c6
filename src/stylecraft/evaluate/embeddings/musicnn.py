"""musicnn: pretrained music-tagging CNNs (Pons & Serra, 2019) as an embedding, without TensorFlow.

The ``musicnn`` 0.1.0 wheel on PyPI ships its trained TensorFlow checkpoints (ISC licence):
``MSD_musicnn`` (Million Song Dataset, 50 tags such as rock, electronic, jazz, ambient,
instrumental) and ``MTT_musicnn`` (MagnaTagATune, 50 tags such as classical, techno, strings,
synth, choir). Unlike VGGish or CLAP it is reachable from a package registry, so a machine that
reaches only registries still gets a learned music embedding: ``stylecraft fetch musicnn``
downloads the wheel and checks its sha256; the checkpoint inside is read by
:mod:`stylecraft.separate.tf_checkpoint` (CRC-checked, no TensorFlow, nothing executed) and cached
as safetensors.

Front end, as ``musicnn.extractor.batch_data``:

1. mono mix, resampled to 16 kHz with soxr's "high quality" filter (librosa's default loader);
2. librosa mel power spectrogram: FFT 512, hop 256, 96 Slaney mel bands, centred frames with
   zero padding;
3. the power is rounded to **float16**, as the reference does, then ``log10(10000 * x + 1)`` is
   taken in float32 (the reference's numpy < 2 promotes ``10000 * float16`` to float32);
4. non-overlapping patches of 187 frames (3 s); a trailing partial patch is dropped.

Network (``build_musicnn``): input batch norm; "timbral" convolutions of 7 frames by 38 and 67 mel
bands (204 filters each) and "temporal" convolutions of 128, 64 and 32 frames by 1 band (51 filters
each), each ReLU then batch norm then max over frequency; three 7-frame dense convolutions with
residual connections (64 filters); max and mean over time of all 753 features; batch norm, a
200-unit dense layer (ReLU, batch norm: the ``penultimate`` features) and 50 tag logits.

The embedding row of a patch is the 200-dimensional ``penultimate`` layer (the features the
authors recommend for transfer); :meth:`MusicnnEmbedding.tags` gives the tag probabilities.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from stylecraft.artifacts import atomic_path, sha256_file
from stylecraft.errors import AudioDecodeError, CheckpointError, ModelNotFoundError
from stylecraft.evaluate.embeddings.base import to_mono_float

__all__ = ["MODELS", "MusicnnEmbedding", "MusicnnNet", "log_mel_patches"]

SAMPLE_RATE = 16_000
N_FFT = 512
HOP = 256
N_MELS = 96
PATCH_FRAMES = 187  # librosa.time_to_frames(3 s) + 1, as the reference computes it
BN_EPS = 1e-3  # tf.compat.v1.layers.batch_normalization's default

WHEEL = "musicnn-0.1.0-py3-none-any.whl"

MSD_LABELS = ("rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s",
              "alternative rock", "jazz", "beautiful", "metal", "chillout", "male vocalists", "classic rock", "soul",
              "indie rock", "Mellow", "electronica", "80s", "folk", "90s", "chill", "instrumental", "punk", "oldies",
              "blues", "hard rock", "ambient", "acoustic", "experimental", "female vocalist", "guitar", "Hip-Hop", "70s",
              "party", "country", "easy listening", "sexy", "catchy", "funk", "electro", "heavy metal",
              "Progressive rock", "60s", "rnb", "indie pop", "sad", "House", "happy")
MTT_LABELS = ("guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast", "piano",
              "ambient", "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male", "singing", "vocals",
              "no vocals", "harpsichord", "loud", "quiet", "flute", "woman", "male vocal", "no vocal", "pop", "soft",
              "sitar", "solo", "man", "classic", "choir", "voice", "new age", "dance", "male voice", "female vocal",
              "beats", "harp", "cello", "no voice", "weird", "country", "metal", "female voice", "choral")

MODELS = {"msd": ("MSD_musicnn", MSD_LABELS), "mtt": ("MTT_musicnn", MTT_LABELS)}
"""Embedding variant -> (checkpoint folder inside the wheel, tag names)."""


# --- front end -----------------------------------------------------------------------------


def log_mel_patches(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """musicnn's input patches ``[n, 187, 96]`` (float32) of one clip.

    Raises:
        AudioDecodeError: If the clip is empty, non-finite, or shorter than one 3 s patch.
    """
    import librosa
    import soxr

    mono = to_mono_float(audio, sample_rate)
    if sample_rate != SAMPLE_RATE:
        mono = soxr.resample(mono, sample_rate, SAMPLE_RATE, quality="HQ").astype(np.float32)
    mel = librosa.feature.melspectrogram(y=mono, sr=SAMPLE_RATE, hop_length=HOP, n_fft=N_FFT, n_mels=N_MELS).T
    # The reference rounds the power to float16, then numpy < 2 promotes ``10000 * x`` to float32
    # (value-based casting): the log is taken in float32. numpy 2 would keep float16 and overflow.
    rep = np.log10(np.float32(10000) * mel.astype(np.float16).astype(np.float32) + np.float32(1))
    n = rep.shape[0] // PATCH_FRAMES
    if n == 0:
        raise AudioDecodeError(f"clip too short for musicnn: {rep.shape[0]} frames < one 3 s patch ({PATCH_FRAMES})")
    return rep[: n * PATCH_FRAMES].reshape(n, PATCH_FRAMES, N_MELS).astype(np.float32)


# --- network -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MusicnnConfig:
    """Sizes of ``build_musicnn`` (the published models use these defaults)."""

    timbral_filters: int = 204  # int(1.6 * 128)
    temporal_filters: int = 51  # int(1.6 * 32)
    midend_filters: int = 64
    backend_units: int = 200
    num_tags: int = 50

    @property
    def frontend_dim(self) -> int:
        return 2 * self.timbral_filters + 3 * self.temporal_filters

    @property
    def midend_dim(self) -> int:
        return self.frontend_dim + 3 * self.midend_filters


TINY = MusicnnConfig(timbral_filters=16, temporal_filters=8, midend_filters=16, backend_units=32)
"""Sizes of the randomly initialised test preset (the published models use :class:`MusicnnConfig`'s defaults)."""

TIMBRAL_BANDS = (int(0.4 * N_MELS), int(0.7 * N_MELS))  # 38 and 67 mel bands
TEMPORAL_FRAMES = (128, 64, 32)


def _bn(n: int) -> nn.BatchNorm1d:
    return nn.BatchNorm1d(n, eps=BN_EPS)


class MusicnnNet(nn.Module):
    """``build_musicnn`` in PyTorch, in inference mode (batch norms use their moving statistics)."""

    def __init__(self, cfg: MusicnnConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or MusicnnConfig()
        self.input_bn = nn.BatchNorm2d(1, eps=BN_EPS)
        self.timbral = nn.ModuleList(nn.Conv2d(1, cfg.timbral_filters, (7, b)) for b in TIMBRAL_BANDS)
        self.timbral_bn = nn.ModuleList(nn.BatchNorm2d(cfg.timbral_filters, eps=BN_EPS) for _ in TIMBRAL_BANDS)
        self.temporal = nn.ModuleList(nn.Conv2d(1, cfg.temporal_filters, (k, 1)) for k in TEMPORAL_FRAMES)
        self.temporal_bn = nn.ModuleList(nn.BatchNorm2d(cfg.temporal_filters, eps=BN_EPS) for _ in TEMPORAL_FRAMES)
        ins = (cfg.frontend_dim, cfg.midend_filters, cfg.midend_filters)
        self.midend = nn.ModuleList(nn.Conv1d(i, cfg.midend_filters, 7) for i in ins)
        self.midend_bn = nn.ModuleList(_bn(cfg.midend_filters) for _ in ins)
        self.pool_bn = _bn(2 * cfg.midend_dim)
        self.dense = nn.Linear(2 * cfg.midend_dim, cfg.backend_units)
        self.dense_bn = _bn(cfg.backend_units)
        self.tags = nn.Linear(cfg.backend_units, cfg.num_tags)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Patches ``[B, T, 96]`` -> ``(penultimate [B, 200], tag logits [B, 50])``."""
        x = self.input_bn(x[:, None])  # [B, 1, T, F]
        feats = []
        for conv, bn in zip(self.timbral, self.timbral_bn, strict=True):
            feats.append(_relu_bn_max(conv(F.pad(x, (0, 0, 3, 3))), bn))  # conv: [B, 204, T, F - bands + 1]
        for conv, bn, k in zip(self.temporal, self.temporal_bn, TEMPORAL_FRAMES, strict=True):
            # TensorFlow's "same" padding of an even kernel puts the extra row at the end.
            feats.append(_relu_bn_max(conv(F.pad(x, (0, 0, (k - 1) // 2, k // 2))), bn))  # conv: [B, 51, T, F]
        front = torch.cat(feats, dim=1)  # [B, 561, T]
        h = front
        mids = []
        for i, (conv, bn) in enumerate(zip(self.midend, self.midend_bn, strict=True)):
            y = bn(F.relu(conv(F.pad(h, (3, 3)))))  # [B, 64, T]
            h = y if i == 0 else y + h
            mids.append(h)
        feat = torch.cat([front, *mids], dim=1)  # [B, 753, T]
        # The reference flattens [753, (max, mean)]: the two pools of each feature sit side by side.
        pooled = torch.stack([feat.amax(dim=2), feat.mean(dim=2)], dim=2).flatten(1)  # [B, 1506]
        pen = self.dense_bn(F.relu(self.dense(self.pool_bn(pooled))))  # [B, 200]
        return pen, self.tags(pen)


def _relu_bn_max(y: torch.Tensor, bn: nn.Module) -> torch.Tensor:
    """``max over frequency of bn(relu(y))`` for ``y`` ``[B, C, T, F]``, as ``[B, C, T]``.

    ReLU and an inference batch norm are monotone per channel (increasing where the norm's scale
    is positive, decreasing where it is negative), so the maximum over frequency is the norm of the
    ReLU of the maximum, or of the minimum: the same numbers, without two passes over the large
    map (a 3 s patch's timbral map holds 2.2 M values per filter bank).
    """
    assert isinstance(bn, nn.BatchNorm2d) and bn.running_var is not None and bn.running_mean is not None
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # [C]
    z = torch.where((scale >= 0)[None, :, None], y.amax(dim=3), y.amin(dim=3)).clamp_min(0)
    return F.batch_norm(z, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


def _tf_to_torch_names() -> dict[str, str]:
    """TensorFlow variable prefix -> torch module prefix, in ``build_musicnn``'s creation order."""
    names = {"batch_normalization": "input_bn"}
    convs = ["timbral.0", "timbral.1", "temporal.0", "temporal.1", "temporal.2", "midend.0", "midend.1", "midend.2"]
    bns = ["timbral_bn.0", "timbral_bn.1", "temporal_bn.0", "temporal_bn.1", "temporal_bn.2",
           "midend_bn.0", "midend_bn.1", "midend_bn.2", "pool_bn", "dense_bn"]
    for i, t in enumerate(convs):
        names[f"conv2d_{i}" if i else "conv2d"] = t
    for i, t in enumerate(bns, start=1):
        names[f"batch_normalization_{i}"] = t
    names["dense"], names["dense_1"] = "dense", "tags"
    return names


def state_from_tf_checkpoint(path: str | Path, cfg: MusicnnConfig | None = None) -> dict[str, torch.Tensor]:
    """Read a musicnn TensorFlow checkpoint into :class:`MusicnnNet`'s state dict.

    Raises:
        CheckpointError: If a variable is missing or has an unexpected shape.
    """
    from stylecraft.separate.tf_checkpoint import TFCheckpoint

    ckpt = TFCheckpoint(path)
    net = MusicnnNet(cfg)
    want = net.state_dict()
    state: dict[str, torch.Tensor] = {}
    bn_keys = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}
    for tf_prefix, mod in _tf_to_torch_names().items():
        if tf_prefix.startswith("batch_normalization"):
            pairs = [(f"{tf_prefix}/{k}", f"{mod}.{v}") for k, v in bn_keys.items()]
        else:
            pairs = [(f"{tf_prefix}/kernel", f"{mod}.weight"), (f"{tf_prefix}/bias", f"{mod}.bias")]
        for tf_name, torch_name in pairs:
            try:
                value = np.asarray(ckpt.read(tf_name), dtype=np.float32)
            except CheckpointError as exc:
                raise CheckpointError(f"{path} is not a musicnn checkpoint: {exc}") from None
            t = torch.from_numpy(value.copy())
            if tf_name.endswith("kernel"):
                if t.ndim == 4:  # TF [kh, kw, in, out]
                    t = t.permute(3, 2, 0, 1)
                    if mod.startswith("midend"):  # a [7, C] kernel over a width-C map is a 1-D conv over C channels
                        t = t[:, 0].permute(0, 2, 1)  # [out, kh, C] -> [out, C, kh]
                else:  # dense [in, out]
                    t = t.T
            if t.shape != want[torch_name].shape:
                raise CheckpointError(f"{path}: {tf_name} has shape {tuple(value.shape)}, "
                                      f"which does not fit {torch_name} {tuple(want[torch_name].shape)}")
            state[torch_name] = t.contiguous()
    for k, v in want.items():
        if k.endswith("num_batches_tracked"):
            state[k] = v
    return state


# --- embedding -----------------------------------------------------------------------------


class MusicnnEmbedding:
    """musicnn penultimate features, one 200-dimensional row per 3 s patch.

    Satisfies :class:`~stylecraft.evaluate.embeddings.BatchedEmbedding`.
    """

    sample_rate = SAMPLE_RATE
    row_seconds = PATCH_FRAMES * HOP / SAMPLE_RATE  # row k covers [k, k + 1) * 2.992 s of the clip

    def __init__(self, net: MusicnnNet, variant: str, weights_id: str, name: str | None = None,
                 device: str | None = None, batch_size: int = 64) -> None:
        if variant not in MODELS:
            raise CheckpointError(f"unknown musicnn model {variant!r} (known: {', '.join(MODELS)})")
        self.variant = variant
        self.name = name or f"musicnn-{variant}"
        self.weights_id = weights_id
        self.batch_size = batch_size
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.net = net.eval().to(self.device)
        self.labels = MODELS[variant][1]

    @classmethod
    def preset(cls, variant: str = "msd", seed: int = 0, size: str = "tiny", **kwargs: Any) -> MusicnnEmbedding:
        """The network randomly initialised (deterministic in ``seed``): tests and quick demos only.

        Args:
            size: ``"tiny"`` (the same layers with few filters: 32-D rows, fast) or ``"full"``
                (the published sizes: 200-D rows).
        """
        if size not in ("tiny", "full"):
            raise CheckpointError(f"unknown musicnn preset size {size!r}: use tiny or full")
        gen = torch.Generator().manual_seed(seed)
        net = MusicnnNet(TINY if size == "tiny" else MusicnnConfig())
        with torch.no_grad():
            for name, p in net.named_parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * (0.1 if name.endswith("bias") else 1.0 / np.sqrt(p[0].numel())))
            for name, b in net.named_buffers():
                if name.endswith("running_mean"):
                    b.copy_(torch.randn(b.shape, generator=gen) * 0.1)
                elif name.endswith("running_var"):
                    b.copy_(torch.rand(b.shape, generator=gen) + 0.5)
        return cls(net, variant, f"random:{size}:{seed}", name=f"musicnn-{variant}-tiny", **kwargs)

    @classmethod
    def from_wheel(cls, wheel: str | Path, variant: str = "msd", cache_dir: str | Path | None = None,
                   **kwargs: Any) -> MusicnnEmbedding:
        """Load the published weights from the ``musicnn`` wheel (read as a zip: nothing in it runs).

        The converted weights are cached as safetensors beside the wheel (or in ``cache_dir``).

        Raises:
            ModelNotFoundError: If the wheel is missing.
            CheckpointError: If it is not a zip holding the musicnn checkpoint.
        """
        from safetensors.torch import load_file, save_file

        wheel = Path(wheel)
        if variant not in MODELS:
            raise CheckpointError(f"unknown musicnn model {variant!r} (known: {', '.join(MODELS)})")
        if not wheel.is_file():
            raise ModelNotFoundError(f"musicnn weights ({wheel}) not found; run `stylecraft fetch musicnn`")
        digest = sha256_file(wheel)
        cache = Path(cache_dir or wheel.parent) / f"{MODELS[variant][0]}-{digest[:16]}.safetensors"
        if not cache.is_file():
            cache.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=cache.parent) as folder:  # the checkpoint is only read once
                _extract_checkpoint(wheel, MODELS[variant][0], Path(folder))
                state = state_from_tf_checkpoint(f"{folder}/")
            with atomic_path(cache) as tmp:
                save_file(state, str(tmp), metadata={"source": WHEEL, "wheel_sha256": digest})
        net = MusicnnNet()
        try:
            net.load_state_dict(load_file(str(cache)))
        except (RuntimeError, OSError) as exc:
            raise CheckpointError(f"{cache} does not hold musicnn weights: {str(exc).splitlines()[0]}") from None
        return cls(net, variant, f"{WHEEL}:{MODELS[variant][0]}:sha256:{digest}", **kwargs)

    @classmethod
    def from_registry(cls, variant: str = "msd", **kwargs: Any) -> MusicnnEmbedding:
        """Load the weights fetched by ``stylecraft fetch musicnn`` (``checkpoints/hub/musicnn``).

        Raises:
            ModelNotFoundError: If they are not on this machine; the message says how to get them.
        """
        from stylecraft.models.registry import checkpoints_dir

        wheel = checkpoints_dir() / "hub" / "musicnn" / WHEEL
        if not wheel.is_file():
            raise ModelNotFoundError(f"musicnn weights are not in {wheel.parent}; run `stylecraft fetch musicnn`")
        return cls.from_wheel(wheel, variant, **kwargs)

    def settings(self) -> dict[str, Any]:
        """Everything that changes the numbers, including the weights' hash."""
        return {
            "name": self.name,
            "version": 1,
            "weights": self.weights_id,
            "sample_rate": SAMPLE_RATE,
            "resampler": f"soxr HQ {importlib.metadata.version('soxr')}",
            "mel": {"n_fft": N_FFT, "hop": HOP, "n_mels": N_MELS, "librosa": importlib.metadata.version("librosa"),
                    "log": "log10(10000 * float16(mel) + 1) in float32"},
            "patch_frames": PATCH_FRAMES,
            "layer": "penultimate",
        }

    def front_end(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """:func:`log_mel_patches`."""
        return log_mel_patches(audio, sample_rate)

    @torch.inference_mode()
    def outputs(self, patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Penultimate features ``[n, 200]`` and tag probabilities ``[n, 50]`` of patches ``[n, 187, 96]``."""
        pens, probs = [], []
        x_all = torch.from_numpy(np.ascontiguousarray(patches, dtype=np.float32))
        for s in range(0, x_all.shape[0], self.batch_size):
            pen, logit = self.net(x_all[s : s + self.batch_size].to(self.device))
            pens.append(pen.float().cpu())
            probs.append(torch.sigmoid(logit.float()).cpu())
        return torch.cat(pens).numpy(), torch.cat(probs).numpy()

    def embed_inputs(self, inputs: np.ndarray) -> np.ndarray:
        """Penultimate features ``[n, 200]`` of patches ``[n, 187, 96]``."""
        return self.outputs(inputs)[0]

    def embed(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """Embed one clip: float32 ``[patches, 200]``.

        Raises:
            AudioDecodeError: If the clip is empty, non-finite, or shorter than 3 s.
        """
        return self.embed_inputs(self.front_end(audio, sample_rate))

    def tags(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """Tag probabilities ``[patches, 50]`` (sigmoid of the logits), in :attr:`labels` order."""
        return self.outputs(self.front_end(audio, sample_rate))[1]


def _extract_checkpoint(wheel: Path, model: str, folder: Path) -> None:
    """Copy one checkpoint's ``.index`` and ``.data-*`` members out of the wheel into the existing ``folder``."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            members = [n for n in zf.namelist() if n.startswith(f"musicnn/{model}/.")
                       and (n.endswith("/.index") or "/.data-" in n)]
            if not any(n.endswith(".index") for n in members):
                raise CheckpointError(f"{wheel} holds no musicnn/{model} checkpoint")
            for n in members:
                with zf.open(n) as src, open(folder / Path(n).name, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
    except zipfile.BadZipFile as exc:
        raise CheckpointError(f"{wheel} is not a wheel (zip): {exc}") from None

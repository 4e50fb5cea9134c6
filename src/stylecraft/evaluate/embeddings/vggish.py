"""VGGish embedding, compatible with torchvggish and with FAD as frechet-audio-distance / fadtk use it.

Front end (a float64 numpy port of VGGish's ``mel_features`` / ``vggish_input``):

1. mono mix (mean of channels); resampled to 16 kHz with resampy's ``kaiser_best`` filter
   (computed as a polyphase product, :mod:`stylecraft.evaluate.embeddings.resample`) when needed, as
   frechet-audio-distance 0.3.4 loads audio;
2. STFT magnitude of 25 ms frames (400 samples, periodic Hann, FFT 512) every 10 ms, no
   padding (a trailing partial frame is dropped);
3. 64 HTK-mel bands from 125 Hz to 7500 Hz, ``log(mel + 0.01)``;
4. non-overlapping examples of 96 frames (0.96 s); a trailing partial example is dropped.

Network: the VGGish CNN with torchvggish's parameter names (``features.*``, ``embeddings.*``),
so the torchvggish release file loads as is. As in both FAD tools, the default drops the final
ReLU (``use_activation=False``) and skips the PCA/quantisation post-processor
(``use_pca=False``); both switches are available and recorded in :meth:`settings`.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from stylecraft.artifacts import sha256_file
from stylecraft.errors import AudioDecodeError, CheckpointError, ModelNotFoundError
from stylecraft.evaluate.embeddings.base import to_mono_float
from stylecraft.evaluate.embeddings.cpu_conv import conv3x3_single_channel, winograd_conv3x3, winograd_weights
from stylecraft.evaluate.embeddings.resample import resample_kaiser_best

__all__ = ["VGGISH_FILES", "VGGishConfig", "VGGishEmbedding", "VGGishNet", "log_mel_examples"]

SAMPLE_RATE = 16_000
WINDOW_S = 0.025
HOP_S = 0.010
NUM_BANDS = 64
MEL_MIN_HZ = 125.0
MEL_MAX_HZ = 7500.0
LOG_OFFSET = 0.01
EXAMPLE_FRAMES = 96

VGGISH_FILES = {"weights": "vggish-10086976.pth", "pca": "vggish_pca_params-970ea276.pth"}
"""torchvggish release file names (the hex is the start of each file's sha256)."""


# --- front end -----------------------------------------------------------------------------


def _frame(data: np.ndarray, window_length: int, hop_length: int) -> np.ndarray:
    """Complete frames of ``data`` (no padding), as VGGish's ``mel_features.frame``."""
    num_frames = 1 + (data.shape[0] - window_length) // hop_length
    if num_frames <= 0:
        return np.empty((0, window_length) + data.shape[1:], dtype=data.dtype)
    shape = (num_frames, window_length) + data.shape[1:]
    strides = (data.strides[0] * hop_length,) + data.strides
    return np.lib.stride_tricks.as_strided(data, shape=shape, strides=strides, writeable=False)


def _hertz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    return 1127.0 * np.log(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def _mel_matrix(num_spectrogram_bins: int) -> np.ndarray:
    """HTK-style triangular mel weights ``[bins, 64]`` with the DC bin zeroed (VGGish's definition)."""
    spec_mel = _hertz_to_mel(np.linspace(0.0, SAMPLE_RATE / 2.0, num_spectrogram_bins))
    edges = np.linspace(_hertz_to_mel(MEL_MIN_HZ), _hertz_to_mel(MEL_MAX_HZ), NUM_BANDS + 2)
    weights = np.empty((num_spectrogram_bins, NUM_BANDS))
    for i in range(NUM_BANDS):
        lower, center, upper = edges[i : i + 3]
        lower_slope = (spec_mel - lower) / (center - lower)
        upper_slope = (upper - spec_mel) / (upper - center)
        weights[:, i] = np.maximum(0.0, np.minimum(lower_slope, upper_slope))
    weights[0, :] = 0.0
    return weights


def log_mel_examples(mono_16k: np.ndarray) -> np.ndarray:
    """VGGish input examples ``[n, 96, 64]`` (float64) from 16 kHz mono audio.

    Args:
        mono_16k: 1-D samples at 16 kHz.

    Returns:
        Log-mel examples; ``n`` is 0 for audio shorter than 0.96 s (plus one STFT window).
    """
    win = int(round(SAMPLE_RATE * WINDOW_S))
    hop = int(round(SAMPLE_RATE * HOP_S))
    fft_length = 2 ** int(np.ceil(np.log(win) / np.log(2.0)))
    frames = _frame(mono_16k, win, hop)
    window = 0.5 - 0.5 * np.cos(2 * np.pi / win * np.arange(win))  # periodic Hann
    spec = np.abs(np.fft.rfft(frames * window, fft_length))
    log_mel = np.log(spec @ _mel_matrix(spec.shape[1]) + LOG_OFFSET)
    return _frame(log_mel, EXAMPLE_FRAMES, EXAMPLE_FRAMES)


# --- network -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class VGGishConfig:
    """Widths of the VGGish network; :meth:`full` is the published model.

    Attributes:
        channels: Output channels of the four conv stages (stage 3 and 4 have two convs).
        hidden: Width of the two hidden fully connected layers.
        dim: Embedding dimension.
    """

    channels: tuple[int, int, int, int] = (64, 128, 256, 512)
    hidden: int = 4096
    dim: int = 128

    @classmethod
    def full(cls) -> VGGishConfig:
        """The published VGGish (72M parameters)."""
        return cls()

    @classmethod
    def tiny(cls) -> VGGishConfig:
        """A small network of the same structure, for offline tests (random weights)."""
        return cls(channels=(4, 8, 8, 16), hidden=32, dim=128)


def _max_pool_2x2(x: torch.Tensor) -> torch.Tensor:
    """``MaxPool2d(2, 2)`` of ``[B, C, H, W]`` with even ``H`` and ``W``, as elementwise maxima.

    The same values bit for bit (a maximum is exact), in the input's memory format. ATen's CPU
    max pool also computes indices and walks the map window by window; three elementwise maxima
    of strided views run about 3-5x faster on NCHW maps and slightly faster on channels-last ones.
    """
    if x.shape[-2] % 2 or x.shape[-1] % 2:
        return torch.nn.functional.max_pool2d(x, 2, 2)
    top = torch.maximum(x[..., 0::2, 0::2], x[..., 0::2, 1::2])  # [B, C, H/2, W/2]
    bottom = torch.maximum(x[..., 1::2, 0::2], x[..., 1::2, 1::2])
    return torch.maximum(top, bottom, out=top)


class VGGishNet(nn.Module):
    """VGGish CNN with torchvggish's module layout (so its state dict loads unchanged)."""

    cpu_kernels: bool = False
    """Run CPU inference through :mod:`stylecraft.evaluate.embeddings.cpu_conv` (fused first layer, Winograd
    convolutions with bias, ReLU and pooling fused); set by :class:`VGGishEmbedding` on CPU."""

    def __init__(self, config: VGGishConfig) -> None:
        super().__init__()
        c1, c2, c3, c4 = config.channels
        layers: list[nn.Module] = []
        in_ch = 1
        for v in (c1, "M", c2, "M", c3, c3, "M", c4, c4, "M"):
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                assert isinstance(v, int)
                layers += [nn.Conv2d(in_ch, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                in_ch = v
        self.features = nn.Sequential(*layers)
        self.embeddings = nn.Sequential(
            nn.Linear(c4 * 4 * 6, config.hidden),
            nn.ReLU(True),
            nn.Linear(config.hidden, config.hidden),
            nn.ReLU(True),
            nn.Linear(config.hidden, config.dim),
            nn.ReLU(True),
        )
        self._winograd: dict[int, tuple[tuple[int, int], torch.Tensor]] = {}

    def forward(self, x: torch.Tensor, use_activation: bool = False) -> torch.Tensor:
        """Embed examples.

        Args:
            x: Log-mel examples ``[B, 1, 96, 64]``.
            use_activation: Apply the final ReLU (the FAD tools drop it by default).

        Returns:
            ``[B, dim]``.
        """
        if (
            self.cpu_kernels
            and x.device.type == "cpu"
            and x.dtype == torch.float32
            and not torch.is_grad_enabled()
            and x.shape[-2] % 32 == 0  # three pools, then 4x4 Winograd tiles
            and x.shape[-1] % 32 == 0
        ):
            x = self._features_cpu(x[:, 0]).flatten(1)  # already channels-last: TF's flatten order
        else:
            x = self._features(x)
            # torchvggish flattens in TF's NHWC order; keep it so the published weights apply.
            x = x.permute(0, 2, 3, 1).contiguous().flatten(1)
        layers = list(self.embeddings.children())
        for layer in layers[:-1]:
            x = layer(x)
        return layers[-1](x) if use_activation else x

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        """The conv stages with torch's own modules: ``[B, 1, H, W]`` -> ``[B, C, H/16, W/16]``."""
        mods = list(self.features.children())
        i = 0
        while i < len(mods):
            if isinstance(mods[i], nn.ReLU) and i + 1 < len(mods) and isinstance(mods[i + 1], nn.MaxPool2d):
                # max and ReLU commute exactly (both monotone), so pooling first runs the ReLU
                # on a quarter of the values and saves one pass over the largest maps.
                x = torch.relu_(_max_pool_2x2(x) if not torch.is_grad_enabled() else mods[i + 1](x))
                i += 2
            else:
                x = mods[i](x)
                i += 1
        return x

    def _features_cpu(self, x: torch.Tensor) -> torch.Tensor:
        """The conv stages with :mod:`~stylecraft.evaluate.embeddings.cpu_conv`: ``[B, H, W]`` -> ``[B, H/16, W/16, C]``."""
        mods = list(self.features.children())
        convs = [(i, m) for i, m in enumerate(mods) if isinstance(m, nn.Conv2d)]
        for k, (i, conv) in enumerate(convs):
            pool = i + 2 < len(mods) and isinstance(mods[i + 2], nn.MaxPool2d)
            pad_output = k + 1 < len(convs)  # written straight into the next conv's padded input
            if conv.in_channels == 1:
                assert pool, "VGGish's first conv is always pooled"
                x = conv3x3_single_channel(x, conv.weight, conv.bias, pad_output=pad_output)
            else:
                x = winograd_conv3x3(x, self._winograd_weights(i, conv.weight), conv.bias, pool=pool, pad_output=pad_output)
        return x

    def _winograd_weights(self, index: int, weight: torch.Tensor) -> torch.Tensor:
        """Transformed filters of conv ``index``, recomputed when the weights change."""
        key = (weight.data_ptr(), weight._version)
        cached = self._winograd.get(index)
        if cached is None or cached[0] != key:
            cached = (key, winograd_weights(weight))
            self._winograd[index] = cached
        return cached[1]


# --- embedding -----------------------------------------------------------------------------


def _resample_to_16k(mono: np.ndarray, sample_rate: int) -> np.ndarray:
    if sample_rate == SAMPLE_RATE:
        return mono
    return resample_kaiser_best(mono, sample_rate, SAMPLE_RATE)


_NUMPY_SAFE_GLOBALS: list[Any] = [
    np._core.multiarray._reconstruct,  # type: ignore[attr-defined]
    np.ndarray,
    np.dtype,
    np.dtypes.Float32DType,
    np.dtypes.Float64DType,
]


class VGGishEmbedding:
    """``vggish``: 128-D embedding per 0.96 s example (see the module docstring)."""

    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        net: VGGishNet,
        weights_id: str,
        pca: tuple[np.ndarray, np.ndarray] | None = None,
        use_pca: bool = False,
        use_activation: bool = False,
        name: str = "vggish",
        device: str | torch.device | None = None,
        batch_size: int = 256,
    ) -> None:
        """Wrap a network.

        Args:
            net: The VGGish network (weights already loaded).
            weights_id: What the weights are (file hashes or ``random:<preset>:<seed>``),
                recorded in :meth:`settings` and in cache keys.
            pca: ``(eigen_vectors [128, 128], means [128])`` for ``use_pca``.
            use_pca: Apply torchvggish's PCA + 8-bit quantisation post-processor.
            use_activation: Keep the final ReLU.
            name: Registry name.
            device: Torch device (default: CUDA when available, else CPU).
            batch_size: Examples per forward pass.
        """
        if use_pca and pca is None:
            raise CheckpointError("use_pca needs the VGGish PCA parameters (vggish_pca_params-970ea276.pth)")
        self.name = name
        self.weights_id = weights_id
        self.use_pca = use_pca
        self.use_activation = use_activation
        self.batch_size = batch_size
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        # channels_last lets cuDNN and oneDNN pick their NHWC kernels when torch's own modules run
        # (GPU, training, odd input shapes); CPU inference uses cpu_conv (see VGGishNet.cpu_kernels).
        self.net = net.eval().to(self.device).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.net.cpu_kernels = self.device.type == "cpu"
        self.pca = pca

    @classmethod
    def preset(cls, size: str = "tiny", seed: int = 0, **kwargs: Any) -> VGGishEmbedding:
        """A randomly initialised network (deterministic in ``seed``), for tests and parity.

        Args:
            size: ``"tiny"`` or ``"full"``.
            seed: Seed of the initialisation.
            **kwargs: Passed to the constructor.
        """
        config = VGGishConfig.tiny() if size == "tiny" else VGGishConfig.full()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = VGGishNet(config)
        return cls(net, weights_id=f"random:{size}:seed{seed}", name=kwargs.pop("name", f"vggish-{size}"), **kwargs)

    @classmethod
    def from_files(cls, weights: str | Path, pca: str | Path | None = None, **kwargs: Any) -> VGGishEmbedding:
        """Load torchvggish release files.

        Args:
            weights: ``vggish-10086976.pth`` (a torch state dict).
            pca: ``vggish_pca_params-970ea276.pth`` (``pca_eigen_vectors``, ``pca_means``).
            **kwargs: Passed to the constructor.

        Raises:
            ModelNotFoundError: If a file is missing.
            CheckpointError: If a file is not a VGGish state dict.
        """
        weights = Path(weights)
        for f in (weights, pca):
            if f is not None and not Path(f).is_file():
                raise ModelNotFoundError(f"VGGish weights file {f} not found; run `stylecraft fetch vggish`")
        with torch.device("meta"):  # no random init of 72M parameters that the file replaces
            net = VGGishNet(VGGishConfig.full())
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
            net.load_state_dict(state, assign=True)
        except (RuntimeError, OSError, KeyError, ValueError) as exc:
            raise CheckpointError(f"{weights} is not a torchvggish state dict: {str(exc).splitlines()[0]}") from exc
        pca_arrays = None
        ids = [sha256_file(weights)]
        if pca is not None:
            # The released PCA file holds numpy arrays: allow exactly the numpy reconstruction
            # functions, nothing that could run other code.
            with torch.serialization.safe_globals(_NUMPY_SAFE_GLOBALS):
                try:
                    params = torch.load(pca, map_location="cpu", weights_only=True)
                except Exception as exc:
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    raise CheckpointError(f"refusing to load {pca}: not a plain VGGish PCA file ({first})") from None
            pca_arrays = (np.asarray(params["pca_eigen_vectors"]), np.asarray(params["pca_means"]).reshape(-1))
            ids.append(sha256_file(pca))
        return cls(net, weights_id="sha256:" + ",".join(ids), pca=pca_arrays, **kwargs)

    @classmethod
    def from_registry(cls, **kwargs: Any) -> VGGishEmbedding:
        """Load the weights fetched by ``stylecraft fetch vggish`` (``checkpoints/hub/vggish``).

        Raises:
            ModelNotFoundError: If they are not on this machine; the message says how to get them.
        """
        from stylecraft.models.registry import checkpoints_dir

        folder = checkpoints_dir() / "hub" / "vggish"
        weights = folder / VGGISH_FILES["weights"]
        pca = folder / VGGISH_FILES["pca"]
        if not weights.is_file():
            raise ModelNotFoundError(f"VGGish weights are not in {folder}; run `stylecraft fetch vggish`")
        return cls.from_files(weights, pca if pca.is_file() else None, **kwargs)

    def settings(self) -> dict[str, Any]:
        """Everything that changes the numbers, including the weights' hashes."""
        return {
            "name": self.name,
            "version": 1,
            "weights": self.weights_id,
            "sample_rate": SAMPLE_RATE,
            "resample": f"polyphase resampy-{importlib.metadata.version('resampy')} kaiser_best",
            "mono": "mean of channels",
            "stft": {"window": "periodic hann", "window_s": WINDOW_S, "hop_s": HOP_S, "fft": 512, "pad": "none"},
            "mel": {"bands": NUM_BANDS, "fmin": MEL_MIN_HZ, "fmax": MEL_MAX_HZ, "scale": "htk", "log_offset": LOG_OFFSET},
            "example": {"frames": EXAMPLE_FRAMES, "hop_frames": EXAMPLE_FRAMES, "partial": "dropped"},
            "use_pca": self.use_pca,
            "use_activation": self.use_activation,
            "cpu_convolution": "stylecraft cpu_conv (first layer fused with its pool; winograd F(4x4,3x3))"
            if self.net.cpu_kernels
            else "torch",
            "torch": torch.__version__,
        }

    def examples(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """Log-mel examples ``[n, 96, 64]`` of a clip (mono mix and resampling included)."""
        mono = to_mono_float(audio, sample_rate)
        mono16 = _resample_to_16k(mono, sample_rate)
        return log_mel_examples(np.asarray(mono16))

    @torch.inference_mode()
    def embed_examples(self, examples: np.ndarray) -> np.ndarray:
        """Run the network (and post-processor) on examples ``[n, 96, 64]``; returns float32 ``[n, 128]``."""
        x_all = torch.from_numpy(np.ascontiguousarray(examples, dtype=np.float32))[:, None]  # [n, 1, 96, 64]
        outs = []
        for start in range(0, x_all.shape[0], self.batch_size):
            x = x_all[start : start + self.batch_size].to(self.device).contiguous(memory_format=torch.channels_last)
            outs.append(self.net(x, use_activation=self.use_activation).float().cpu())
        emb = torch.cat(outs)
        if self.use_pca:
            assert self.pca is not None
            vecs = torch.as_tensor(self.pca[0], dtype=torch.float32)
            means = torch.as_tensor(self.pca[1].reshape(-1, 1), dtype=torch.float32)
            emb = torch.mm(vecs, emb.t() - means).t()
            emb = torch.round((torch.clamp(emb, -2.0, 2.0) + 2.0) * (255.0 / 4.0))
        return emb.numpy().astype(np.float32)

    def front_end(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """Log-mel examples ``[n, 96, 64]`` as float32, the network's input dtype.

        Raises:
            AudioDecodeError: If the clip is empty, non-finite, or shorter than one 0.96 s example.
        """
        ex = self.examples(audio, sample_rate)
        if ex.shape[0] == 0:
            seconds = np.asarray(audio).shape[0] / sample_rate
            raise AudioDecodeError(f"clip of {seconds:.2f} s is shorter than one VGGish example (0.975 s)")
        return np.ascontiguousarray(ex, dtype=np.float32)

    def embed_inputs(self, inputs: np.ndarray) -> np.ndarray:
        """:meth:`embed_examples` (the batched half of the :class:`BatchedEmbedding` protocol)."""
        return self.embed_examples(inputs)

    def embed(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """Embed one clip.

        Returns:
            float32 ``[examples, 128]``.

        Raises:
            AudioDecodeError: If the clip is empty, non-finite, or shorter than one 0.96 s example.
        """
        return self.embed_examples(self.front_end(audio, sample_rate))

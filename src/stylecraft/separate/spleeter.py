"""Spleeter separation in PyTorch: Spleeter's prediction path, streamed in bounded memory.

What ``spleeter separate`` computes for a stereo waveform ``x`` at 44.1 kHz (``EstimatorSpecBuilder``
in ``spleeter/model/__init__.py``), and what this module reproduces:

1. prepend ``frame_length`` (4096) zero samples; STFT with frame 4096, hop 1024, periodic Hann
   window, zero padding at the end so every sample is covered (``tf.signal.stft(pad_end=True)``);
2. magnitude of the first ``F`` bins, zero-padded to a multiple of ``T`` = 512 frames and cut
   into ``[segments, T, F, 2]`` network inputs;
3. each stem's U-Net gives an estimated magnitude ``s_i``; the ratio mask is
   ``(s_i^p + eps / n) / (sum_j s_j^p + eps)`` with ``p = separation_exponent`` and eps 1e-10,
   extended above ``F`` with zeros (or the band average), then multiplied with the complex STFT;
4. inverse STFT (irfft, the same Hann window, overlap-add, no window normalisation) times 2/3,
   and the output cropped back to the input's length after the 4096 prepended samples.

With ``mwf=True`` (Spleeter's ``--mwf``), step 3 is replaced by Spleeter's multichannel Wiener
filter (``norbert.wiener`` with one EM iteration): soft masks ``s_i / (eps + sum_j s_j)`` give
initial stem STFTs, each stem's spatial covariance ``R_j`` is averaged over the whole track, and
every frame is filtered with ``W_j = v_j R_j (sum_k v_k R_k + sqrt(eps) I)^-1``. The statistics
need the whole track, so the audio goes through the network twice: a first pass accumulates
``sum_t y_j y_j^H``, ``sum_t v_j`` and ``max |x|``, the second filters and resynthesises. Memory
stays bounded; the network runs twice.

Spleeter does all of this on the whole file at once (and ``spleeter separate`` first crops the
input to 600 s). Here the network sees exactly the same 512-frame segments, but they are
processed a few at a time: the STFT of a group of segments needs only its own samples plus a
3072-sample overlap, and overlap-add only ever waits on the last 3072 samples. So a file of any
length is separated in memory bounded by ``batch_segments`` and gives the same result as the
whole-file computation, up to float rounding.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from stylecraft.artifacts import atomic_path, sha256_file
from stylecraft.errors import CheckpointError, ConfigError
from stylecraft.separate.spleeter_net import (
    SPLEETER_MODELS,
    SpleeterNet,
    SpleeterSpec,
    check_state_shapes,
    load_tf_checkpoint,
    spec_from_spleeter_config,
)

__all__ = ["SpleeterSeparator", "SpleeterStream", "resolve_spec"]

_EPSILON = 1e-10
_WINDOW_COMPENSATION = 2.0 / 3.0


def resolve_spec(model: str | Path | SpleeterSpec) -> SpleeterSpec:
    """A spec from a released model name (``4stems``, ``spleeter:4stems``, ``2stems-16kHz``), a
    Spleeter JSON params file, or a spec.

    Raises:
        ConfigError: unknown name or unreadable params file.
    """
    if isinstance(model, SpleeterSpec):
        return model
    text = str(model)
    name = text.split(":", 1)[1] if text.startswith("spleeter:") else text
    if name in SPLEETER_MODELS:
        return SPLEETER_MODELS[name]
    path = Path(name).expanduser()
    if path.suffix == ".json":
        if not path.is_file():
            raise ConfigError(f"Spleeter params file not found: {path}")
        try:
            config = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path} is not a readable Spleeter params file: {exc}") from None
        return spec_from_spleeter_config(config, name=path.stem)
    known = ", ".join(f"spleeter:{k}" for k in SPLEETER_MODELS)
    raise ConfigError(f"unknown Spleeter model {text!r}; known: {known}, or a Spleeter params .json file")


def _default_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


@dataclass
class SpleeterSeparator:
    """A Spleeter model ready to separate audio.

    Build one with :meth:`from_checkpoint` (a TensorFlow checkpoint directory, such as an
    extracted official ``4stems.tar.gz`` or a ``spleeter train`` model_dir), :meth:`from_safetensors`
    or :meth:`random` (deterministic random weights, for tests and offline demos).
    """

    net: SpleeterNet
    device: torch.device
    batch_segments: int
    origin: str = ""
    mwf: bool = False  # multichannel Wiener filtering (two passes)

    @property
    def spec(self) -> SpleeterSpec:
        return self.net.spec

    @property
    def stems(self) -> tuple[str, ...]:
        return self.spec.instruments

    @property
    def sample_rate(self) -> int:
        return self.spec.sample_rate

    @classmethod
    def _build(
        cls,
        spec: SpleeterSpec,
        state: dict[str, torch.Tensor] | None,
        device: str | torch.device | None,
        batch_segments: int | None,
        origin: str,
    ) -> SpleeterSeparator:
        net = SpleeterNet(spec)
        if state is not None:
            check_state_shapes(net, state, origin)
            net.load_state_dict(state, strict=False)  # num_batches_tracked is not in TF checkpoints
        dev = torch.device(device) if device not in (None, "auto") else _default_device()
        # NHWC ("channels_last"): oneDNN's convolutions ran faster in it here, as cuDNN's do.
        net.eval().to(dev).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        if batch_segments is None:
            batch_segments = 8 if dev.type == "cuda" else 2
        if batch_segments < 1:
            raise ConfigError(f"batch_segments must be >= 1, got {batch_segments}")
        return cls(net=net, device=dev, batch_segments=batch_segments, origin=origin)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        model: str | Path | SpleeterSpec = "2stems",
        device: str | torch.device | None = None,
        batch_segments: int | None = None,
        cache_dir: str | Path | None = None,
    ) -> SpleeterSeparator:
        """Load a TensorFlow checkpoint (directory or prefix) for the given model.

        With ``cache_dir``, a safetensors copy keyed by the checkpoint's hash is written there
        and used by later loads.

        Raises:
            CheckpointError: not a Spleeter checkpoint, or its stem count does not fit ``model``.
        """
        from stylecraft.separate.tf_checkpoint import find_checkpoint_prefix

        spec = resolve_spec(model)
        prefix = find_checkpoint_prefix(Path(path))
        cached: Path | None = None
        if cache_dir is not None:
            key = sha256_file(Path(f"{prefix}.index"))[:16]
            cached = Path(cache_dir) / f"{spec.name}-{key}.safetensors"
            if cached.is_file():
                return cls.from_safetensors(cached, device=device, batch_segments=batch_segments)
        state = load_tf_checkpoint(prefix, spec)
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(cached) as tmp:
                save_file(
                    {k: v.contiguous() for k, v in state.items()},
                    str(tmp),
                    metadata={"spec": json.dumps(spec.to_json())},
                )
        return cls._build(spec, state, device, batch_segments, origin=str(prefix))

    @classmethod
    def from_safetensors(
        cls, path: str | Path, device: str | torch.device | None = None, batch_segments: int | None = None
    ) -> SpleeterSeparator:
        """Load weights saved by :meth:`save` (the spec travels in the file's metadata)."""
        from safetensors import safe_open

        path = Path(path)
        try:
            with safe_open(str(path), framework="pt") as fh:
                meta = fh.metadata() or {}
            spec = SpleeterSpec.from_json(json.loads(meta["spec"]))
            state = load_file(str(path))
        except (OSError, KeyError, ValueError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{path} is not a stylecraft Spleeter safetensors file: {exc}") from None
        return cls._build(spec, state, device, batch_segments, origin=str(path))

    @classmethod
    def random(
        cls,
        model: str | Path | SpleeterSpec = "2stems",
        seed: int = 0,
        conv_n_filters: tuple[int, ...] | None = None,
        device: str | torch.device | None = None,
        batch_segments: int | None = None,
    ) -> SpleeterSeparator:
        """Deterministic random weights (and random batch-norm statistics) for tests and demos.

        ``conv_n_filters`` shrinks the network (e.g. ``(4, 4, 8, 8, 8, 8)``) without changing
        anything else of the model's computation.
        """
        spec = resolve_spec(model)
        if conv_n_filters is not None:
            spec = SpleeterSpec.from_json(
                {**spec.to_json(), "conv_n_filters": list(conv_n_filters), "name": f"{spec.name}-tiny"}
            )
        gen = torch.Generator().manual_seed(seed)
        net = SpleeterNet(spec)
        state = {}
        for name, tensor in net.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var"):
                state[name] = 0.5 + torch.rand(tensor.shape, generator=gen)
            elif name.endswith("running_mean") or name.endswith("bias"):
                state[name] = 0.1 * torch.randn(tensor.shape, generator=gen)
            elif tensor.ndim == 1:  # batch-norm gamma
                state[name] = 1.0 + 0.1 * torch.randn(tensor.shape, generator=gen)
            else:  # He-uniform, as Spleeter initialises
                fan_in = tensor.shape[1] * tensor.shape[2] * tensor.shape[3]
                bound = float(np.sqrt(6.0 / fan_in))
                state[name] = (torch.rand(tensor.shape, generator=gen) * 2 - 1) * bound
        return cls._build(spec, state, device, batch_segments, origin=f"random(seed={seed})")

    def save(self, path: str | Path) -> None:
        """Save weights and spec as one safetensors file (atomically)."""
        state = {
            k: v.detach().cpu().contiguous()
            for k, v in self.net.state_dict().items()
            if not k.endswith("num_batches_tracked")
        }
        with atomic_path(Path(path)) as tmp:
            save_file(state, str(tmp), metadata={"spec": json.dumps(self.spec.to_json())})

    # -- separation --------------------------------------------------------------------------

    def stream(self, stats: WienerStats | None = None) -> SpleeterStream:
        """A streaming separation: feed stereo blocks at ``sample_rate``, get stem blocks back.

        With ``mwf``, pass the statistics of a finished :meth:`statistics_stream` over the same
        audio.
        """
        if self.mwf and stats is None:
            raise ValueError("Wiener filtering needs the statistics pass first (statistics_stream)")
        return SpleeterStream(self, stats=stats if self.mwf else None)

    def statistics_stream(self) -> SpleeterStream:
        """First pass of Wiener filtering: returns no audio; ``.stats`` is set by ``finish``."""
        return SpleeterStream(self, collect=True)

    def separate(self, waveform: np.ndarray, sample_rate: int | None = None) -> dict[str, np.ndarray]:
        """Separate a whole waveform ``[samples, channels]`` (or ``[samples]``) in memory.

        Mono is duplicated to stereo and more than two channels keep the first two, as Spleeter
        does; other sample rates are resampled to the model's rate and back. Each stem comes
        back as float32 ``[samples, 2]`` at the input's rate and length.
        """
        from stylecraft.separate.streaming import separate_array

        return separate_array(self, waveform, sample_rate or self.sample_rate)


@dataclass
class WienerStats:
    """Whole-track sums for the Wiener filter, per stem, over the first ``F`` bins."""

    cov: torch.Tensor  # [S, F, 2, 2] complex: sum_t y_j y_j^H
    power: torch.Tensor  # [S, F]: sum_t mean_c |y_j|^2
    max_abs: float  # max |x| over every frame, bin and channel


class SpleeterStream:
    """Incremental Spleeter separation of stereo float32 blocks at the model's sample rate."""

    def __init__(self, separator: SpleeterSeparator, stats: WienerStats | None = None, collect: bool = False) -> None:
        spec = separator.spec
        self.sep = separator
        self.hop = spec.frame_step
        self.win = spec.frame_length
        self.ratio = self.win // self.hop
        self.group = separator.batch_segments * spec.T  # frames per network call
        self._pending: list[np.ndarray] = [np.zeros((self.win, 2), dtype=np.float32)]
        self._buffer = np.zeros((0, 2), dtype=np.float32)
        self._buffer_start = 0  # padded-signal index of _buffer[0]
        self._buffered_end = self.win  # padded-signal index one past the last sample received
        self._out_cursor = 0  # padded-signal index of the next output sample
        self._next_frame = 0
        self._n_in = 0
        self._tail: torch.Tensor | None = None  # [S, 2, (ratio-1)*hop] overlap-add carry
        self._emitted = 0  # output samples (original index) already returned
        self._finished = False
        self.stats = stats
        self._collect = collect
        dev = separator.device
        self._window = torch.hann_window(self.win, periodic=True, dtype=torch.float32, device=dev)

    @property
    def stems(self) -> tuple[str, ...]:
        return self.sep.stems

    def feed(self, block: np.ndarray) -> dict[str, np.ndarray]:
        """Add ``[n, 2]`` float32 samples; return the stem samples that became final."""
        if self._finished:
            raise RuntimeError("stream already finished")
        block = np.asarray(block, dtype=np.float32)
        if block.ndim != 2 or block.shape[1] != 2:
            raise ValueError(f"expected [n, 2] stereo block, got {block.shape}")
        self._pending.append(block)
        self._n_in += block.shape[0]
        self._buffered_end += block.shape[0]
        outs: list[torch.Tensor | None] = []
        while self._buffered_end >= (self._next_frame + self.group - 1) * self.hop + self.win:
            outs.append(self._process(self.group))
        return self._emit(outs, limit=None)

    def finish(self) -> dict[str, np.ndarray]:
        """Flush: process the remaining frames (zero-padded to whole segments)."""
        if self._finished:
            raise RuntimeError("stream already finished")
        self._finished = True
        total = self.win + self._n_in
        n_frames = -(-total // self.hop)  # tf.signal.stft(pad_end=True)
        remaining = n_frames - self._next_frame
        T = self.sep.spec.T
        outs: list[torch.Tensor | None] = []
        while remaining > 0:
            frames = min(self.group, -(-remaining // T) * T)
            need = (self._next_frame + frames - 1) * self.hop + self.win
            if need > self._buffered_end:
                self._pending.append(np.zeros((need - self._buffered_end, 2), dtype=np.float32))
                self._buffered_end = need
            outs.append(self._process(frames))
            remaining -= frames
        return self._emit(outs, limit=self._n_in)

    def _emit(self, results: list[torch.Tensor | None], limit: int | None) -> dict[str, np.ndarray]:
        outs = [o for o in results if o is not None]  # None: the statistics pass yields no audio
        if outs:
            joined = torch.cat(outs, dim=-1).cpu().numpy()  # [S, 2, n] in padded coordinates
        else:
            joined = np.zeros((len(self.stems), 2, 0), dtype=np.float32)
        # The first `win` padded samples are the prepended zeros: never returned.
        start = self._out_cursor
        self._out_cursor = start + joined.shape[-1]
        lo = max(self.win - start, 0)
        piece = joined[..., lo:]
        if limit is not None:
            piece = piece[..., : max(limit - self._emitted, 0)]
        self._emitted += piece.shape[-1]
        return {stem: np.ascontiguousarray(piece[i].T) for i, stem in enumerate(self.stems)}

    def _take(self, start: int, stop: int) -> np.ndarray:
        """Samples [start, stop) of the padded signal; drops what no later frame needs."""
        if self._pending:
            self._buffer = (
                np.concatenate([self._buffer, *self._pending])
                if self._buffer.size
                else np.concatenate(self._pending)
            )
            self._pending = []
        seg = self._buffer[start - self._buffer_start : stop - self._buffer_start]
        return seg

    @torch.inference_mode()
    def _process(self, frames: int) -> torch.Tensor | None:
        """Separate frames [next, next + frames); return the output samples they complete (None in the statistics pass)."""
        spec = self.sep.spec
        hop, win, r = self.hop, self.win, self.ratio
        a = self._next_frame
        samples = self._take(a * hop, (a + frames - 1) * hop + win)
        x = torch.from_numpy(np.ascontiguousarray(samples.T)).to(self.sep.device)  # [2, L]
        stft = torch.fft.rfft(x.unfold(-1, win, hop) * self._window, n=win)  # [2, frames, bins]
        bins = stft.shape[-1]
        n_seg = frames // spec.T
        mag = stft.abs()[..., : spec.F].reshape(2, n_seg, spec.T, spec.F).transpose(0, 1)  # [n_seg, 2, T, F]
        est = self.sep.net(mag.contiguous(memory_format=torch.channels_last))  # [S, n_seg, 2, T, F]
        n_stems = est.shape[0]
        if self._collect or self.stats is not None:
            est = est.transpose(1, 2).reshape(n_stems, 2, frames, spec.F)  # [S, 2, frames, F]
            if self._collect:
                self._accumulate(est, stft)
                masked = None
            else:
                masked = self._wiener(est, stft)
        else:
            power = est.pow(spec.separation_exponent)
            masks = (power + _EPSILON / n_stems) / (power.sum(0) + _EPSILON)
            masks = masks.transpose(1, 2).reshape(n_stems, 2, frames, spec.F)  # [S, 2, frames, F]
            extra = bins - spec.F
            if extra:
                if spec.mask_extension == "average":
                    ext = masks.mean(dim=-1, keepdim=True).expand(-1, -1, -1, extra)
                else:
                    ext = masks.new_zeros(n_stems, 2, frames, extra)
                masks = torch.cat([masks, ext], dim=-1)
            masked = masks * stft.unsqueeze(0)
        self._advance(a + frames)
        if masked is None:  # statistics pass: no audio
            return None
        y = torch.fft.irfft(masked, n=win)[..., :win] * self._window  # [S, 2, frames, win]
        # Overlap-add: frame f covers hops f .. f + r - 1.
        y = y.reshape(n_stems, 2, frames, r, hop)
        ola = y.new_zeros(n_stems, 2, frames + r - 1, hop)
        for j in range(r):
            ola[:, :, j : j + frames] += y[:, :, :, j]
        ola = ola.reshape(n_stems, 2, -1) * _WINDOW_COMPENSATION
        if self._tail is not None:
            ola[..., : self._tail.shape[-1]] += self._tail
        done = frames * hop
        self._tail = ola[..., done:].clone()
        return ola[..., :done]

    def _advance(self, next_frame: int) -> None:
        """Move to ``next_frame``; samples before its start are never needed again."""
        self._next_frame = next_frame
        drop = next_frame * self.hop - self._buffer_start
        if drop > 0:
            self._buffer = self._buffer[drop:]
            self._buffer_start += drop

    def _accumulate(self, est: torch.Tensor, stft: torch.Tensor) -> None:
        F_bins = est.shape[-1]
        y = _soft_estimates(est, stft[..., :F_bins])  # [S, 2, t, F]
        cov = torch.einsum("sitf,sjtf->sfij", y, y.conj())  # [S, F, 2, 2]
        power = (y.real.square() + y.imag.square()).mean(dim=1).sum(dim=1)  # [S, F]
        max_abs = float(stft.abs().max())
        if self.stats is None:
            self.stats = WienerStats(cov=cov.to(torch.complex128), power=power.double(), max_abs=max_abs)
        else:
            self.stats.cov += cov.to(torch.complex128)
            self.stats.power += power.double()
            self.stats.max_abs = max(self.stats.max_abs, max_abs)


    def _wiener(self, est: torch.Tensor, stft: torch.Tensor) -> torch.Tensor:
        stats = self.stats
        assert stats is not None
        F_bins = est.shape[-1]
        m = max(1.0, stats.max_abs / 10.0)  # norbert scales the mixture down for stability
        x = (stft[..., :F_bins] / m).to(torch.complex128)  # [2, t, F]
        y = _soft_estimates(est, stft[..., :F_bins]).to(torch.complex128) / m  # [S, 2, t, F]
        v = (y.real.square() + y.imag.square()).mean(dim=1).to(torch.complex128)  # [S, t, F]
        R = (stats.cov / (m * m)) / (_WIENER_EPS + stats.power / (m * m)).to(torch.complex128)[..., None, None]  # [S, F, 2, 2]
        cxx = torch.einsum("stf,sfij->tfij", v, R)
        cxx[..., 0, 0] += _WIENER_EPS**0.5
        cxx[..., 1, 1] += _WIENER_EPS**0.5
        det = cxx[..., 0, 0] * cxx[..., 1, 1] - cxx[..., 0, 1] * cxx[..., 1, 0]
        inv = torch.stack(
            [torch.stack([cxx[..., 1, 1], -cxx[..., 0, 1]], -1), torch.stack([-cxx[..., 1, 0], cxx[..., 0, 0]], -1)], -2
        ) / det[..., None, None]  # [t, F, 2, 2]
        gain = torch.einsum("sfik,tfkj->stfij", R, inv) * v[..., None, None]  # [S, t, F, 2, 2]
        out = torch.einsum("stfij,jtf->sitf", gain, x) * m  # [S, 2, t, F]
        bins = stft.shape[-1]
        full = torch.zeros(out.shape[0], 2, out.shape[2], bins, dtype=stft.dtype, device=stft.device)
        full[..., :F_bins] = out.to(stft.dtype)  # above F the model gives no estimate: zero, as in Spleeter
        return full


# -- multichannel Wiener filter (norbert.wiener, one EM iteration, as Spleeter calls it) -----------

_WIENER_EPS = float(np.finfo(np.float32).eps)  # norbert's default for complex64 input


def _soft_estimates(est: torch.Tensor, stft_f: torch.Tensor) -> torch.Tensor:
    """``y_j = s_j / (eps + sum_k s_k) * x`` over the first F bins: [S, 2, frames, F] complex."""
    return (est / (_WIENER_EPS + est.sum(0, keepdim=True))) * stft_f.unsqueeze(0)

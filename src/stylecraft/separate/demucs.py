"""Demucs as a second separation backend, through the ``demucs`` package (4.1, no torchaudio).

Models are Demucs' own classes (``HTDemucs`` by default) run with ``demucs.apply.apply_model``
(overlapping segments, optional random shifts), with the input normalised by the mixture's mean
and standard deviation and the stems scaled back, as ``demucs.separate`` does.

Weights: Demucs publishes pickled ``.th`` packages (class, constructor arguments, state). The
package's own loader unpickles them without restriction, which runs whatever code a file
names; stylecraft instead loads them with ``torch.load(weights_only=True)`` and only Demucs'
model classes allowed, so a tampered file fails to load instead of executing anything.

``demucs:tiny`` is a small ``HTDemucs`` with deterministic random weights, registered under a
pretrained-style name so that tests and offline demos run everywhere; it separates nothing
meaningful.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from stylecraft.errors import CheckpointError, ConfigError, ModelNotFoundError

__all__ = ["DemucsSeparator", "DemucsStream", "fetch_demucs"]

_SOURCES = ("drums", "bass", "other", "vocals")
_TINY = dict(
    channels=8, depth=2, t_layers=1, t_heads=2, segment=4, nfft=1024, dconv_depth=1, t_hidden_scale=1.0
)


def _require_demucs() -> None:
    try:
        import demucs  # noqa: F401
    except ImportError:
        raise ConfigError(
            "the Demucs backend needs the demucs package: pip install 'stylecraft[demucs]'"
        ) from None


def _model_classes() -> list[type]:
    from demucs.demucs import Demucs
    from demucs.hdemucs import HDemucs
    from demucs.htdemucs import HTDemucs

    return [Demucs, HDemucs, HTDemucs]


def load_demucs_package(path: Path) -> torch.nn.Module:
    """Load one Demucs ``.th`` package safely (no code execution) and build its model.

    Raises:
        CheckpointError: unreadable file, or a file that references anything but Demucs' models.
    """
    import inspect

    import demucs.states

    classes = _model_classes()
    try:
        with torch.serialization.safe_globals(list(classes)):  # type: ignore[arg-type]
            package = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"refusing to load {path}: not a plain Demucs weights package ({first})"
        ) from None
    if not isinstance(package, dict) or not {"klass", "args", "kwargs", "state"} <= set(package):
        raise CheckpointError(f"{path} is not a Demucs model package (expected klass/args/kwargs/state)")
    klass = package["klass"]
    if klass not in classes:
        raise CheckpointError(f"{path} names model class {klass!r}, not a Demucs model")
    kwargs = {k: v for k, v in package["kwargs"].items() if k in inspect.signature(klass).parameters}
    model = klass(*package["args"], **kwargs)
    demucs.states.set_state(model, package["state"])
    return model  # type: ignore[no-any-return]


def _demucs_home() -> Path:
    return Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")) / "hub" / "checkpoints"


@dataclass
class DemucsSeparator:
    """A Demucs model (or bag of models) ready to separate audio."""

    model: torch.nn.Module
    device: torch.device
    name: str
    shifts: int = 0
    overlap: float = 0.25
    origin: str = ""

    @property
    def stems(self) -> tuple[str, ...]:
        return tuple(self.model.sources)  # type: ignore[arg-type]

    @property
    def sample_rate(self) -> int:
        return int(self.model.samplerate)  # type: ignore[arg-type]

    @classmethod
    def _build(
        cls, model: torch.nn.Module, name: str, device: str | torch.device | None, origin: str
    ) -> DemucsSeparator:
        dev = (
            torch.device(device)
            if device not in (None, "auto")
            else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        )
        model.eval().to(dev)
        return cls(model=model, device=dev, name=name, origin=origin)

    @classmethod
    def tiny(cls, seed: int = 0, device: str | torch.device | None = None) -> DemucsSeparator:
        """A small ``HTDemucs`` with deterministic random weights."""
        _require_demucs()
        from demucs.htdemucs import HTDemucs

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = HTDemucs(sources=list(_SOURCES), **_TINY)  # type: ignore[arg-type]
        return cls._build(model, "tiny", device, origin=f"random(seed={seed})")

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, name: str = "htdemucs", device: str | torch.device | None = None
    ) -> DemucsSeparator:
        """Load ``path``: one ``.th`` package, or a folder holding ``<name>.yaml`` (a bag of models,
        as in Demucs' ``remote/``) and the ``.th`` files it lists (``<sig>-<hash>.th``)."""
        _require_demucs()
        path = Path(path).expanduser()
        if path.is_file():
            return cls._build(load_demucs_package(path), name, device, origin=str(path))
        if not path.is_dir():
            raise CheckpointError(f"Demucs checkpoint not found: {path}")
        return cls._build(_load_bag(path, name), name, device, origin=str(path))

    @classmethod
    def pretrained(cls, name: str = "htdemucs", device: str | torch.device | None = None) -> DemucsSeparator:
        """A released model by name from Demucs' download cache (``$TORCH_HOME/hub/checkpoints``).

        Raises:
            ModelNotFoundError: the weights are not on this machine.
        """
        if name == "tiny":
            return cls.tiny(device=device)
        _require_demucs()
        import demucs.pretrained

        remote = Path(demucs.pretrained.REMOTE_ROOT)
        if not (remote / f"{name}.yaml").is_file():
            known = sorted(p.stem for p in remote.glob("*.yaml"))
            raise ConfigError(f"unknown Demucs model {name!r}; known: {', '.join(known + ['tiny'])}")
        try:
            return cls._build(
                _load_bag(remote, name, weights=_demucs_home()), name, device, origin=f"demucs:{name}"
            )
        except ModelNotFoundError as exc:
            raise ModelNotFoundError(
                f"{exc}; download it with `stylecraft fetch demucs:{name}` on a machine with network, "
                "or pass --checkpoint PATH"
            ) from None

    def stream(self) -> DemucsStream:
        return DemucsStream(self)


def _load_bag(folder: Path, name: str, weights: Path | None = None) -> torch.nn.Module:
    import yaml
    from demucs.apply import BagOfModels

    spec_file = folder / f"{name}.yaml"
    if not spec_file.is_file():
        found = sorted(p.name for p in folder.iterdir())[:6] if folder.is_dir() else []
        raise CheckpointError(
            f"{folder} has no {name}.yaml describing Demucs model {name!r} (found: {', '.join(found) or 'nothing'})"
        )
    bag = yaml.safe_load(spec_file.read_text())
    weights = weights or folder
    models = []
    for sig in bag["models"]:
        candidates = sorted(weights.glob(f"{sig}-*.th")) + sorted(weights.glob(f"{sig}.th"))
        if not candidates:
            raise ModelNotFoundError(f"Demucs weights {sig} for {name!r} not found in {weights}")
        models.append(load_demucs_package(candidates[0]))
    if len(models) == 1 and "weights" not in bag and "segment" not in bag:
        return models[0]
    return BagOfModels(models, bag.get("weights"), bag.get("segment"))  # type: ignore[arg-type]


class DemucsStream:
    """Demucs needs the whole track (it normalises by the mixture's statistics): this stream
    collects the blocks and separates at ``finish``. Memory grows with duration."""

    def __init__(self, separator: DemucsSeparator) -> None:
        self.sep = separator
        self.stems = separator.stems
        self._blocks: list[np.ndarray] = []

    def feed(self, block: np.ndarray) -> dict[str, np.ndarray]:
        self._blocks.append(np.asarray(block, dtype=np.float32))
        return {s: np.zeros((0, 2), dtype=np.float32) for s in self.stems}

    @torch.inference_mode()
    def finish(self) -> dict[str, np.ndarray]:
        from demucs.apply import apply_model

        if not self._blocks:
            return {s: np.zeros((0, 2), dtype=np.float32) for s in self.stems}
        wav = torch.from_numpy(np.concatenate(self._blocks).T.copy())  # [2, n]
        self._blocks = []
        ref = wav.mean(0)
        mean, std = ref.mean(), ref.std()
        scale = std if float(std) > 0 else torch.tensor(1.0)
        x = ((wav - mean) / scale).to(self.sep.device)
        out = apply_model(
            self.sep.model,  # type: ignore[arg-type]
            x[None],
            shifts=self.sep.shifts,
            split=True,
            overlap=self.sep.overlap,
            progress=False,
            device=self.sep.device,
        )[0]  # [S, 2, n]
        stems = (out * scale.to(out.device) + mean.to(out.device)).cpu().numpy()
        return {s: np.ascontiguousarray(stems[i].T) for i, s in enumerate(self.stems)}


def fetch_demucs(name: str = "htdemucs", root_url: str | None = None) -> list[Path]:
    """Download the weights of a Demucs model into Demucs' cache and verify them.

    Demucs names each file ``<sig>-<first 8 hex digits of its sha256>.th``; every download is
    checked against that prefix before it is moved into place.

    Raises:
        ConfigError: unknown model name.
        ModelNotFoundError: no network.
        CheckpointError: a file does not match its published hash.
    """
    import yaml

    from stylecraft.artifacts import atomic_path, download, sha256_file

    _require_demucs()
    import demucs.pretrained

    remote = Path(demucs.pretrained.REMOTE_ROOT)
    spec = remote / f"{name}.yaml"
    if not spec.is_file():
        known = sorted(p.stem for p in remote.glob("*.yaml"))
        raise ConfigError(f"unknown Demucs model {name!r}; known: {', '.join(known)}")
    base = root_url or demucs.pretrained.ROOT_URL
    files: dict[str, str] = {}
    root = ""
    for line in (remote / "files.txt").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("root:"):
            root = line.split(":", 1)[1].strip()
        else:
            files[line.split("-", 1)[0]] = root + line
    home = _demucs_home()
    home.mkdir(parents=True, exist_ok=True)
    out = []
    for sig in yaml.safe_load(spec.read_text())["models"]:
        rel = files[sig]
        filename = rel.rsplit("/", 1)[-1]
        target = home / filename
        want = filename.rsplit("-", 1)[1].split(".")[0]
        if not target.is_file() or not sha256_file(target).startswith(want):
            with atomic_path(target) as tmp:  # removed, not renamed, if the check below fails
                download(base + rel, tmp)
                got = sha256_file(tmp)
                if not got.startswith(want):
                    raise CheckpointError(f"{filename}: sha256 {got[:12]}… does not start with the published {want}")
        out.append(target)
    return out

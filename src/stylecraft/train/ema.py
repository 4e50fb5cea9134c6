"""Exponential moving average (EMA) of the trainable weights.

The average is kept in float32 beside the live weights and updated after every optimizer step
that was taken (an fp16 step the grad scaler skipped leaves it unchanged). It is saved as a
safetensors file in each checkpoint, listed with its sha256 in the state file, so a resumed run
continues the same average bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from stylecraft.errors import CheckpointError

EMA_FILE = "ema.safetensors"


class EMA:
    """Shadow copies ``s <- decay * s + (1 - decay) * w`` of named trainable parameters.

    Args:
        named: the trainable parameters, by name (a fixed order: the optimizer's).
        decay: weight of the old average per step, in (0, 1).
    """

    def __init__(self, named: list[tuple[str, torch.nn.Parameter]], decay: float) -> None:
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]
        self.decay = decay
        self.shadow = [p.detach().float().clone() for p in self.params]

    @torch.no_grad()
    def update(self) -> None:
        for s, p in zip(self.shadow, self.params, strict=True):
            s.lerp_(p.detach().float(), 1.0 - self.decay)

    @contextmanager
    def applied(self) -> Iterator[None]:
        """Within the block the live parameters hold the average; afterwards their own values again."""
        backup = [p.detach().clone() for p in self.params]
        with torch.no_grad():
            for s, p in zip(self.shadow, self.params, strict=True):
                p.copy_(s.to(p.dtype))
        try:
            yield
        finally:
            with torch.no_grad():
                for b, p in zip(backup, self.params, strict=True):
                    p.copy_(b)

    @torch.no_grad()
    def copy_to_params(self) -> None:
        """Overwrite the live parameters with the average (for export, after training)."""
        for s, p in zip(self.shadow, self.params, strict=True):
            p.copy_(s.to(p.dtype))

    def save(self, path: Path) -> None:
        from safetensors.torch import save_file

        from stylecraft.artifacts import atomic_path

        tensors = {n: s.detach().cpu().contiguous() for n, s in zip(self.names, self.shadow, strict=True)}
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={"decay": repr(self.decay)})

    def load(self, path: Path) -> None:
        """Read an average saved by :meth:`save` (safetensors: no code can run).

        Raises:
            CheckpointError: the file is missing or holds other parameters.
        """
        from safetensors.torch import load_file

        if not path.exists():
            raise CheckpointError(f"'{path}' is missing: the checkpoint was made without train.ema")
        tensors = load_file(str(path))
        if sorted(tensors) != sorted(self.names):
            raise CheckpointError(f"'{path}' holds other parameters than the model's trainable ones")
        for i, n in enumerate(self.names):
            if tensors[n].shape != self.shadow[i].shape:
                raise CheckpointError(f"'{path}': '{n}' has shape {tuple(tensors[n].shape)}, "
                                      f"expected {tuple(self.shadow[i].shape)}")
            self.shadow[i].copy_(tensors[n])

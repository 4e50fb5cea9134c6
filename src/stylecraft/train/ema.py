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
    """Shadow copies ``s <- d * s + (1 - d) * w`` of named trainable parameters.

    With ``warmup`` the weight of the old average rises with the number of updates ``n``,
    ``d = min(decay, (1 + n) / (10 + n))``, so the average soon forgets the starting weights
    (without it, 1,000 steps at 0.999 leave 37% of them in the average).

    Args:
        named: the trainable parameters, by name (a fixed order: the optimizer's).
        decay: the largest weight of the old average per step, in (0, 1).
        warmup: let the weight rise from 0.1 to ``decay``.
    """

    def __init__(self, named: list[tuple[str, torch.nn.Parameter]], decay: float, warmup: bool = True) -> None:
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]
        self.decay = decay
        self.warmup = warmup
        self.updates = 0
        self.shadow = [p.detach().float().clone() for p in self.params]

    def current_decay(self) -> float:
        """The weight of the old average at the next update."""
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self) -> None:
        weight = 1.0 - self.current_decay()
        for s, p in zip(self.shadow, self.params, strict=True):
            s.lerp_(p.detach().float(), weight)
        self.updates += 1

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
            save_file(tensors, str(tmp), metadata={"decay": repr(self.decay), "warmup": str(self.warmup),
                                                   "updates": str(self.updates)})

    def load(self, path: Path) -> None:
        """Read an average saved by :meth:`save` (safetensors: no code can run).

        Raises:
            CheckpointError: the file is missing or holds other parameters.
        """
        from safetensors.torch import load_file

        if not path.exists():
            raise CheckpointError(f"'{path}' is missing: the checkpoint was made without train.ema")
        from safetensors import safe_open

        tensors = load_file(str(path))
        with safe_open(str(path), "pt") as handle:
            self.updates = int((handle.metadata() or {}).get("updates", 0))
        if sorted(tensors) != sorted(self.names):
            raise CheckpointError(f"'{path}' holds other parameters than the model's trainable ones")
        for i, n in enumerate(self.names):
            if tensors[n].shape != self.shadow[i].shape:
                raise CheckpointError(f"'{path}': '{n}' has shape {tuple(tensors[n].shape)}, "
                                      f"expected {tuple(self.shadow[i].shape)}")
            self.shadow[i].copy_(tensors[n])

"""Training checkpoints: ``step-N`` folders written beside their final name and renamed, with the
sha256 of every file in ``trainer_state.json`` (written last), checked again before a resume.

Shared by the language-model loop (:mod:`stylecraft.train.loop`) and codec training
(:mod:`stylecraft.codec.train`).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from accelerate import Accelerator

from stylecraft.artifacts import atomic_write_json, files_sha256, sha256_file
from stylecraft.errors import CheckpointError

STATE_FILE = "trainer_state.json"


def list_checkpoints(ckpt_root: Path) -> list[Path]:
    done = [p for p in ckpt_root.glob("step-*") if (p / STATE_FILE).exists()]
    return sorted(done, key=lambda p: int(p.name.split("-")[1]))


def load_checkpoint(accelerator: Accelerator, folder: Path, saved: dict[str, Any]) -> None:
    """Resume from a step folder: its files must match their recorded sha256, and every pickled
    file (optimizer, scheduler and RNG states) is read with ``torch.load(weights_only=True)``
    (accelerate's default), which refuses any object that would run code.

    Raises:
        CheckpointError: a file is missing or altered, or holds something other than plain data.
    """
    import pickle

    for name, digest in saved.get("files", {}).items():
        path = folder / name
        if not path.exists() or sha256_file(path) != digest:
            raise CheckpointError(
                f"checkpoint file '{path}' is missing or differs from the sha256 recorded when it was saved: "
                f"delete '{folder}' to resume from the one before"
            )
    try:
        accelerator.load_state(str(folder))
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"refusing checkpoint '{folder}': {first[:300]}") from None


def save_checkpoint(
    accelerator: Accelerator, root: Path, step: int, state: dict[str, Any], keep_last: int,
    extra: Callable[[Path], None] | None = None, protect: list[str] | None = None,
) -> None:
    """Write ``step-N`` beside its final name and rename it; keep the last ``keep_last`` and the
    folders named in ``protect``. ``extra(folder)`` writes more state into the step folder (the EMA
    file) on the main process."""
    final = root / f"step-{step:07d}"
    tmp = root / f".step-{step:07d}.partial"
    if accelerator.is_main_process:
        if tmp.exists():
            shutil.rmtree(tmp)
        root.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    # T5 ties its input embedding to the shared table; safetensors stores the tensor once and
    # accelerate warns about it on every save, although the reload re-ties it.
    other_log = logging.getLogger("accelerate.utils.other")
    level = other_log.level
    other_log.setLevel(logging.ERROR)
    try:
        accelerator.save_state(str(tmp), safe_serialization=True)
    finally:
        other_log.setLevel(level)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if extra is not None:
            extra(tmp)
        # The state file is written last, so a step folder without it is never trusted; it lists
        # the sha256 of every file beside it for `stylecraft verify`.
        # FSDP's sharded model and optimizer are folders of per-rank files: those are listed too.
        files = files_sha256(tmp)
        atomic_write_json(tmp / STATE_FILE, {**state, "files": files})
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        for old in list_checkpoints(root)[:-keep_last]:
            if old.name not in (protect or []):
                shutil.rmtree(old)
    accelerator.wait_for_everyone()

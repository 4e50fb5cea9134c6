"""What a studio serves and the limits it enforces."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from stylecraft.errors import StylecraftError

DEFAULT_HOST = "127.0.0.1"  # local only unless the user asks for another interface
DEFAULT_PORT = 7860
MAX_TAKES = 4  # take slots laid out on the Generate tab


@dataclass(frozen=True)
class StudioSettings:
    """A studio's runs, models, output folder and limits.

    Attributes:
        runs: run folders shown on every tab (their ``model/`` is offered on Generate).
        models: other models offered on Generate (preset, registry name, hub id or folder).
        out_dir: where takes are written, one folder per request.
        max_upload_mb: uploads above this size are refused by the server.
        max_duration_s: longest piece one request may ask for.
        watermark_key: the key takes are marked and checked with (``env:NAME`` reads ``$NAME``).
        embedding: the embedding Compare scores with (``mfcc`` needs no weights).
        n_boot: bootstrap replicates of the confidence intervals on Compare.
    """

    runs: tuple[Path, ...] = ()
    models: tuple[str, ...] = ()
    out_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()) / "stylecraft-studio")
    max_upload_mb: float = 50.0
    max_duration_s: float = 120.0
    watermark_key: str = "stylecraft"
    embedding: str = "mfcc"
    n_boot: int = 100

    def validate(self) -> None:
        for run in self.runs:
            if not run.is_dir():
                raise StylecraftError(f"run folder '{run}' does not exist")
        if self.max_upload_mb <= 0 or self.max_duration_s <= 0:
            raise StylecraftError("--max-upload-mb and --max-duration must be > 0")

    def model_choices(self) -> list[str]:
        """Runs first, then the models named on the command line, then the presets."""
        from stylecraft.models.loading import PRESETS

        seen: list[str] = []
        for name in [*(str(r) for r in self.runs), *self.models, *PRESETS]:
            if name not in seen:
                seen.append(name)
        return seen

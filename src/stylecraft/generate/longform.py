"""Long-form generation by windowed continuation in code space.

A piece longer than one window is generated window by window: each window continues the last
``context_s`` seconds of codes already generated (passed to the decoder as its prompt) with up to
``window_s - context_s`` seconds of new frames, until the piece is ``duration_s`` long. The
decoder therefore never sees more than ``window_s`` seconds, so the memory and time of a window
do not grow with the piece; only the integer codes accumulate (K int64 values per frame).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from stylecraft.errors import StylecraftError
from stylecraft.models.loading import ModelBundle


@dataclass(frozen=True)
class LongForm:
    """Window and context of windowed continuation (seconds)."""

    window_s: float = 30.0  # frames the decoder sees at once (prompt + new); MusicGen trains on 30 s
    context_s: float = 10.0  # seconds of the piece so far that prompt each next window

    def frames(self, bundle: ModelBundle) -> tuple[int, int]:
        """(window, context) in codec frames."""
        fr = bundle.frame_rate
        return int(round(self.window_s * fr)), int(round(self.context_s * fr))

    def validate(self, bundle: ModelBundle | None = None, prefix_positions: int = 0) -> None:
        """One-line errors for values no model can use, or that exceed ``bundle``'s positions.

        Args:
            prefix_positions: decoder positions taken before the codes (melody models prepend
                their text and chroma states to the code sequence).
        """
        if self.window_s <= 0:
            raise StylecraftError(f"--window must be > 0 s, got {self.window_s}")
        if not 0 <= self.context_s < self.window_s:
            raise StylecraftError(
                f"--context must be >= 0 and shorter than --window ({self.window_s} s), got {self.context_s}"
            )
        if bundle is None:
            return
        w, c = self.frames(bundle)
        if w - c < 1:
            raise StylecraftError(f"--window minus --context must be at least one codec frame (1/{bundle.frame_rate} s)")
        decoder: Any = bundle.model.config.decoder
        max_pos = int(decoder.max_position_embeddings)
        need = w + bundle.num_codebooks + prefix_positions  # start token + K-1 delay steps + prefix
        if need > max_pos:
            most = (max_pos - bundle.num_codebooks - prefix_positions) / bundle.frame_rate
            raise StylecraftError(
                f"--window {self.window_s} s needs {need} decoder positions but the model has {max_pos}: "
                f"use --window {math.floor(most * 10) / 10} or less"
            )


@dataclass(frozen=True)
class Window:
    """One call of the decoder: ``prompt_frames`` of context, then ``new_frames`` sampled."""

    start_frame: int  # where the window's prompt begins in the piece
    prompt_frames: int
    new_frames: int

    @property
    def end_frame(self) -> int:
        return self.start_frame + self.prompt_frames + self.new_frames


def plan(total_frames: int, window_frames: int, context_frames: int, seed_frames: int = 0) -> list[Window]:
    """The windows that grow a piece from ``seed_frames`` (a seed riff's codes) to ``total_frames``.

    Every window's prompt is the last ``min(frames so far, context_frames)`` frames, and it adds
    as many new frames as fit in the window (fewer in the last one).
    """
    windows: list[Window] = []
    pos = seed_frames
    while pos < total_frames:
        prompt = min(pos, context_frames)
        new = min(window_frames - prompt, total_frames - pos)
        windows.append(Window(start_frame=pos - prompt, prompt_frames=prompt, new_frames=new))
        pos += new
    return windows

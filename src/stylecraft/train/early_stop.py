"""Early stopping and best-checkpoint tracking on a metric where lower is better.

The tracker's whole state is a small dict kept in ``trainer_state.json``, so a resumed run counts
the same evaluations without improvement as an uninterrupted one and stops at the same step.
"""

from __future__ import annotations

import math
from typing import Any


def new_state() -> dict[str, Any]:
    return {"best": None, "best_step": None, "bad": 0, "stopped_at": None}


def observe(state: dict[str, Any], value: float, step: int, min_delta: float) -> bool:
    """Record one evaluation; returns whether it is a new best.

    A value counts as an improvement when it is below the best so far by more than ``min_delta``;
    a non-finite value never improves (a diverged run runs out of patience).
    """
    improved = math.isfinite(value) and (state["best"] is None or value < state["best"] - min_delta)
    if improved:
        state["best"], state["best_step"], state["bad"] = float(value), step, 0
    else:
        state["bad"] += 1
    return improved


def should_stop(state: dict[str, Any], patience: int) -> bool:
    return int(state["bad"]) >= patience

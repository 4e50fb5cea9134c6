"""The learning-rate schedule as phases, so that a run resumed with another ``train.max_steps``
carries on smoothly instead of jumping.

A phase starts at ``start`` from the rate factor ``begin`` (a share of ``train.lr``), rises
linearly to 1 over ``warmup`` steps, then follows a half cosine to 0 at ``end``. A new run has one
phase from step 0 and factor 0: exactly transformers' ``get_cosine_schedule_with_warmup``. A
resume with another ``max_steps`` adds a phase at the step it resumes from, beginning at the rate
the run had reached: training longer after the rate decayed warms up again to the peak and decays
to the new end (a warm restart); the rate never jumps.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR


def new_phase(start: int, end: int, begin: float, warmup: int) -> dict[str, Any]:
    return {"start": start, "end": end, "begin": begin, "warmup": max(0, min(warmup, end - start))}


def factor(phases: list[dict[str, Any]], step: float) -> float:
    """The rate (a share of ``train.lr``) after ``step`` optimizer steps."""
    phase = next((p for p in reversed(phases) if step >= p["start"]), phases[0])
    local = step - phase["start"]
    if local < phase["warmup"]:
        return phase["begin"] + (1.0 - phase["begin"]) * local / max(1, phase["warmup"])
    progress = (local - phase["warmup"]) / max(1, phase["end"] - phase["start"] - phase["warmup"])
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


def phased_scheduler(optimizer: torch.optim.Optimizer, phases: list[dict[str, Any]], n_proc: int) -> LambdaLR:
    """A scheduler reading ``phases`` (a list the run may extend in place on resume).

    Accelerate steps a prepared scheduler once per process each optimizer step, hence ``n_proc``.
    The closure is not a callable object, so the scheduler's state_dict does not carry the phases
    and loading a checkpoint does not overwrite the list the run restored.
    """
    return LambdaLR(optimizer, lambda count: factor(phases, count / n_proc))


def continue_phases(phases: list[dict[str, Any]], step: int, max_steps: int, warmup: int) -> bool:
    """Add a phase when a run resumed at ``step`` now ends at another ``max_steps``; True if added."""
    if phases[-1]["end"] == max_steps or step >= max_steps:
        return False
    phases.append(new_phase(step, max_steps, factor(phases, step), warmup))
    return True

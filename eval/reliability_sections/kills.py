"""Kills: segment, augment, tokenize and train killed with SIGKILL at random moments and rerun with
the same command; ``stylecraft verify`` must be clean and outputs equal to an uninterrupted run."""

from __future__ import annotations

import argparse
from typing import Any

from .common import verdict
from .pytest_runs import render_tests, run_pytest

# Tests that send SIGKILL to a running stage. Each one skips (data stages) or fails (training)
# when the process finished before the signal, so "passed" means killed, resumed and checked.
KILL_TESTS = ("test_killed_stage_resumes_to_the_same_result", "test_sigkill_and_resume_gives_identical_losses")


def kill_kind(trial: dict[str, Any]) -> str:
    """``"kill"`` (a kill happened, whatever the outcome), ``"not killed"`` (the stage finished
    first: nothing was killed) or ``"no kill"`` (a test of the same files that kills nothing)."""
    name = str(trial["test"]).split("::")[-1].split("[")[0]
    if name not in KILL_TESTS:
        return "no kill"
    return "not killed" if str(trial["outcome"]).startswith("skipped") else "kill"


def kill_counts(section: dict[str, Any]) -> dict[str, int]:
    """Kill tests that killed (and of them, passed), runs where nothing was killed, other checks."""
    kinds = [(kill_kind(t), t["outcome"] == "passed") for t in section["trials"]]
    return {"kills": sum(k == "kill" for k, _ in kinds), "kills_passed": sum(k == "kill" and ok for k, ok in kinds),
            "not_killed": sum(k == "not killed" for k, _ in kinds), "other": sum(k == "no kill" for k, _ in kinds),
            "other_passed": sum(k == "no kill" and ok for k, ok in kinds)}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    trials = []
    for seed in range(args.kill_trials):
        trials += [{"seed": seed, **r} for r in run_pytest(["tests/test_kill_resume.py", "-m", ""],
                                                         {"STYLECRAFT_KILL_SEED": str(seed)})]
    trials += [{"seed": "-", **r} for r in run_pytest(["tests/train/test_loop.py", "-k", "kill or resume"])]
    return {"trials": trials, **kill_counts({"trials": trials})}


def render(p: dict[str, Any]) -> list[str]:
    k = kill_counts(p)
    rows = [{**t, "outcome": f"{t['outcome']} ({kill_kind(t)})"} for t in p["trials"]]
    return render_tests("Kill and rerun", rows,
                         f"{k['kills_passed']} of {k['kills']} runs that killed a stage passed. Each data-stage test kills "
                         "the stage with SIGKILL at a random moment after its first finished unit of work, reruns the same "
                         "command, and checks outputs byte-equal to an uninterrupted run, finished units untouched and "
                         "`stylecraft verify` clean (it skips, and is not counted, when the stage finished before the "
                         "kill); the training test kills `stylecraft train` and checks an exact resume. "
                         f"{k['not_killed']} run(s) killed nothing because the stage had finished; {k['other_passed']} of "
                         f"{k['other']} tests from the same files that kill nothing (clean-up of temporary files, "
                         "refusal of changed settings) passed and are listed but not counted as kills.")


def targets(p: dict[str, Any]) -> list[str]:
    k = kill_counts(p)  # counted from the trials, so earlier saved sections are counted the same way
    ok = k["kills"] > 0 and k["kills_passed"] == k["kills"]
    return [f"- Every kill-and-restart completes with `verify` clean: {verdict(ok)} ({k['kills_passed']}/{k['kills']} "
            f"runs that killed a stage; {k['not_killed']} run(s) where the stage finished before the kill and "
            f"{k['other']} test(s) that kill nothing are not counted)."]

"""The ``stylecraft`` command line run in the test's own process, through the console script's ``main()``.

A subprocess per call spends seconds importing torch and transformers before it prints a one-line
error; in process the call reuses the test's imports. ``main()`` is what turns a user error into one
line on stderr and an exit status, so it is what runs here, with typer's ``CliRunner`` isolating
stdout, stderr and the environment. Warnings and log records raised during the call are written to
the captured stderr as a fresh interpreter would show them (pytest would otherwise keep them), so a
"one line, no traceback" check sees what a user would. tests/test_cli_entry_point.py keeps one real
subprocess through the installed console script.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import huggingface_hub.constants as hub_constants
from typer.testing import CliRunner

from stylecraft import cli

QUIET_ENV = {"STYLECRAFT_PROGRESS": "0", "HF_HUB_OFFLINE": "1"}
# A fresh interpreter's default filters: deprecations only from __main__, which an installed command has none of.
_SILENT_BY_DEFAULT = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)


@dataclass(frozen=True)
class CliResult:
    """What a finished command left: the fields of ``subprocess.CompletedProcess`` that tests read."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str | os.PathLike[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> CliResult:
    """Run ``stylecraft ARGS`` in process and return its exit status, stdout and stderr.

    Args:
        env: variables set for the call on top of ``QUIET_ENV`` (no progress bars, hub offline).
        cwd: working folder of the call (default: the test's).
    """
    argv = [str(a) for a in args]
    env = {**QUIET_ENV, **(env or {})}
    with _working_dir(cwd), _hub_offline(env), CliRunner().isolation(env=env) as (out, err, _):
        with _as_a_fresh_interpreter():
            code = _run_main(argv)
        sys.stderr.flush()
        sys.stdout.flush()
        return CliResult(tuple(argv), code, out.getvalue().decode(), err.getvalue().decode())


def _run_main(argv: list[str]) -> int:
    saved = sys.argv
    sys.argv = ["stylecraft", *argv]
    try:
        cli.main()
    except SystemExit as exc:
        return _exit_status(exc.code)
    finally:
        sys.argv = saved
    return 0


def _exit_status(code: object) -> int:
    """The status a process would end with after ``sys.exit(code)``."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


@contextlib.contextmanager
def _as_a_fresh_interpreter() -> Iterator[None]:
    """Show warnings and warning-level log records on stderr, as a process with no logging set up does."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    root = logging.getLogger()
    root.addHandler(handler)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        for category in _SILENT_BY_DEFAULT:
            warnings.simplefilter("ignore", category)
        try:
            yield
        finally:
            root.removeHandler(handler)
            for w in caught:
                sys.stderr.write(warnings.formatwarning(w.message, w.category, w.filename, w.lineno, w.line))


@contextlib.contextmanager
def _hub_offline(env: dict[str, str]) -> Iterator[None]:
    """huggingface_hub reads HF_HUB_OFFLINE once, at import: set its constant for the call as well."""
    saved = hub_constants.HF_HUB_OFFLINE
    hub_constants.HF_HUB_OFFLINE = env.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")
    try:
        yield
    finally:
        hub_constants.HF_HUB_OFFLINE = saved


@contextlib.contextmanager
def _working_dir(cwd: Path | None) -> Iterator[None]:
    before = os.getcwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(before)

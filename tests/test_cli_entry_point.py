"""The installed ``stylecraft`` console script, end to end in its own process.

Every other CLI error test runs ``main()`` in process (tests/cli_runner.py); this one checks that
the entry point pyproject.toml declares is installed and behaves the same from a shell.
"""

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(sys.executable).with_name("stylecraft")


def test_console_script_prints_a_user_error_as_one_line(tmp_path):
    assert SCRIPT.is_file(), f"no console script at {SCRIPT}: install the package (pip install -e .)"
    env = {**os.environ, "STYLECRAFT_PROGRESS": "0", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([str(SCRIPT), "run", str(tmp_path / "missing.yaml")], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 1, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "missing.yaml" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""

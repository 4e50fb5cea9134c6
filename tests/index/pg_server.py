"""A throw-away PostgreSQL server for the index tests: Debian's binaries, a temporary data folder,
127.0.0.1 and a free port; stopped when the tests end. ``STYLECRAFT_TEST_PG_URL`` names an
existing server instead."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator


def _bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def postgres_server() -> Iterator[str | None]:
    """Yield a ``postgresql://`` URL of a running server, or ``None`` with the reason printed."""
    if os.environ.get("STYLECRAFT_TEST_PG_URL"):
        yield os.environ["STYLECRAFT_TEST_PG_URL"]
        return
    initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
    if not initdb or not pg_ctl:
        yield None
        return
    # PostgreSQL refuses to run as root: run it as the 'postgres' account Debian's package creates.
    as_user: list[str] = []
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            yield None
            return
        as_user = ["runuser", "-u", "postgres", "--"]
    root = tempfile.mkdtemp(prefix="stylecraft-pg-")
    data, sock = os.path.join(root, "data"), os.path.join(root, "sock")
    os.makedirs(sock)
    if as_user:
        shutil.chown(root, "postgres")
        shutil.chown(sock, "postgres")
    port = _free_port()
    user = "postgres" if as_user else pwd.getpwuid(os.geteuid()).pw_name
    started = False
    try:
        subprocess.run([*as_user, initdb, "-D", data, "-U", user, "--auth=trust", "-E", "UTF8"], check=True,
                       capture_output=True, timeout=120)
        opts = f"-c listen_addresses=127.0.0.1 -c port={port} -k {sock} -c fsync=off"
        subprocess.run([*as_user, pg_ctl, "-D", data, "-o", opts, "-w", "-t", "60", "-l", os.path.join(root, "log"), "start"],
                       check=True, capture_output=True, timeout=120)
        started = True
        yield f"postgresql://{user}@127.0.0.1:{port}/postgres"
    except (subprocess.SubprocessError, OSError):
        yield None
    finally:
        if started:
            subprocess.run([*as_user, pg_ctl, "-D", data, "-m", "fast", "stop"], capture_output=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)

"""A throwaway PostgreSQL server for the tests: Debian's binaries, a cluster in a temp dir.

Each pytest process starts its own (``postgres_server`` in ``tests/conftest.py``) on a free
loopback port, with durability off (fsync, full-page writes: a test's data need not survive a
crash), and every test that asks gets a database of its own. Nothing is installed or started
system-wide. As root the server runs as Debian's ``postgres`` user: initdb and postgres refuse
to run as root.

Where the binaries are missing the tests that need them are skipped, saying why, unless
``PARCELRISK_REQUIRE_POSTGRES=1`` (CI, after ``scripts/install_services.sh``): then missing
binaries fail the run rather than skip what CI must prove.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

REQUIRE_ENV = "PARCELRISK_REQUIRE_POSTGRES"


def server_binaries() -> Path | None:
    """The directory holding initdb and pg_ctl (Debian: /usr/lib/postgresql/NN/bin)."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    found = shutil.which("initdb")
    if found:
        candidates.insert(0, str(Path(found).resolve().parent))
    for directory in candidates:
        if (Path(directory) / "initdb").is_file() and (Path(directory) / "pg_ctl").is_file():
            return Path(directory)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_server_user() -> list[str]:
    """``runuser -u postgres --`` as root (initdb refuses root), nothing otherwise."""
    if os.geteuid() != 0:
        return []
    return ["runuser", "-u", "postgres", "--"]


@dataclass
class PostgresServer:
    bindir: Path
    directory: Path
    port: int

    @property
    def data(self) -> Path:
        return self.directory / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*_as_server_user(), *args], capture_output=True, text=True, timeout=120, check=False
        )

    def _options(self) -> str:
        return (
            f"-p {self.port} -h 127.0.0.1 -k {self.directory} -c fsync=off "
            "-c full_page_writes=off -c max_connections=200"
        )

    def _pg_ctl_start(self) -> None:
        done = self._run(
            str(self.bindir / "pg_ctl"),
            "-D", str(self.data), "-o", self._options(), "-l", str(self.directory / "server.log"),
            "-w", "-t", "60", "start",
        )  # fmt: skip
        if done.returncode != 0:
            log = (self.directory / "server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"PostgreSQL did not start: {done.stderr.strip()}\n{log}")

    def restart(self) -> None:
        """Start it again on the same data and port (after ``stop``)."""
        self._pg_ctl_start()

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")
        done = self._run(
            str(self.bindir / "initdb"),
            "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync",
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr.strip() or done.stdout.strip()}")
        self._pg_ctl_start()

    def stop(self, mode: str = "immediate") -> None:
        """``immediate`` at teardown; ``fast`` for an outage the data must survive (an
        immediate stop is a crash: commits not yet written out would be replayed or lost)."""
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "stop")

    def create_database(self) -> str:
        """A new empty database; its URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def start_server() -> PostgresServer | str:
    """A running throwaway server in a new temp dir, or why there is none (binaries missing).

    The dir is made directly under the system temp dir: pytest's own (``/tmp/pytest-of-root``)
    is private to root, where the postgres user could not reach its data."""
    import tempfile

    bindir = server_binaries()
    if bindir is None:
        return (
            "PostgreSQL server binaries (initdb, pg_ctl) not found: install Debian's postgresql "
            "(as root: bash scripts/install_services.sh) to run the PostgreSQL store tests"
        )
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser: cannot start PostgreSQL as the postgres user"
    server = PostgresServer(bindir, Path(tempfile.mkdtemp(prefix="parcelrisk-pg-")), _free_port())
    server.start()
    return server


def server_or_skip() -> PostgresServer:
    """``start_server()`` for a fixture: skipped, saying why, without the binaries (a failure
    instead under ``PARCELRISK_REQUIRE_POSTGRES=1``, as CI runs)."""
    import pytest

    server = start_server()
    if isinstance(server, str):
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1: {server}")
        pytest.skip(server)
    return server


def remove(server: PostgresServer) -> None:
    """Stop it and delete its cluster."""
    server.stop()
    shutil.rmtree(server.directory, ignore_errors=True)

"""A real, throwaway PostgreSQL server for the tests (a pytest plugin: ``tests/conftest.py`` loads it).

``initdb`` and ``pg_ctl`` from ``/usr/lib/postgresql/*/bin`` in a temp dir, on a free port on 127.0.0.1, as the
``postgres`` system user when the tests run as root (``initdb`` refuses root), with password authentication
(scram-sha-256) for the user ``uf``. Durability is off (``fsync=off``): a test server, not a benchmark's.

Fixtures:
- ``pg_server`` (session): one server per pytest-xdist worker (each worker is its own process and session);
  skipped with the reason when the PostgreSQL binaries are not installed;
- ``pg_url``: a fresh database for one test, ``postgresql://uf@127.0.0.1:PORT/DB`` (no password in it), with
  ``PGPASSWORD`` set for the test and the processes it starts.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

USER, PASSWORD = "uf", "uf-test-password"


def pg_bin() -> Path | None:
    """The newest installed PostgreSQL's bin directory, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    """One PostgreSQL cluster in ``root`` (``start``, ``stop``, ``restart``, ``create_db``)."""

    def __init__(self, bindir: Path, fsync: bool = False) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="uf-pg-"))  # under /tmp: the postgres user can reach it
        self.port = free_port()
        self.fsync = fsync
        self._dbs = itertools.count()
        self.as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_postgres:
            shutil.chown(self.root, "postgres")
        pw = self.root / "pw"
        pw.write_text(PASSWORD + "\n")
        if self.as_postgres:
            shutil.chown(pw, "postgres")
        self._run(str(bindir / "initdb"), "-D", str(self.root / "data"), "-U", USER, f"--pwfile={pw}",
                  "-A", "scram-sha-256", "--no-sync", "-E", "UTF8", "--locale=C")
        pw.unlink()

    def _run(self, *args: str) -> None:
        proc = subprocess.run([*self.as_postgres, *args], capture_output=True, text=True, timeout=120)
        if proc.returncode:
            raise RuntimeError(f"{args[0]} failed ({proc.returncode}): {proc.stdout[-2000:]} {proc.stderr[-2000:]}")

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.root} -h 127.0.0.1" + ("" if self.fsync else
                                                                " -c fsync=off -c synchronous_commit=off")
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"), "-o", opts,
                  "-l", str(self.root / "log"), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"), "-m", mode, "-w", "stop")

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{db}"

    def connect(self, db: str = "postgres"):  # noqa: ANN201 - a psycopg connection
        import psycopg

        return psycopg.connect(self.url(db), password=PASSWORD, autocommit=True)

    def create_db(self, owner: str = USER) -> str:
        """A new empty database; its URL (without the password)."""
        name = f"t{os.getpid()}_{next(self._dbs)}"
        with self.connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}" OWNER "{owner}"')
        return self.url(name)

    def cleanup(self) -> None:
        try:
            self.stop("immediate")
        except RuntimeError:
            pass  # already stopped
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    bindir = pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): apt-get install -y postgresql")
    server = PgServer(bindir)
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def pg_url(pg_server: PgServer, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    return pg_server.create_db()

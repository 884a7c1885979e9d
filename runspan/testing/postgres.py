"""A throwaway PostgreSQL cluster for tests and benchmarks, from the machine's initdb and pg_ctl.

runspan's own tests and benchmarks use it, and so can yours: ``start()`` gives a server,
``create_database()`` a database of its own per test. ``RUNSPAN_TEST_POSTGRES_URL`` points it
at a server someone else runs. Otherwise the
cluster lives in a temporary folder, listens on a free loopback port only, and is stopped and
removed when the tests end. ``initdb`` refuses to run as root, so as root it runs as the
``postgres`` user.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

URL_ENV = "RUNSPAN_TEST_POSTGRES_URL"


@dataclass
class PostgresServer:
    url: str  # an admin URL to the 'postgres' database
    data_dir: Path | None = None
    pg_ctl: Path | None = None
    run_as: list[str] | None = None
    options: str = ""

    def _pg_ctl(self, *arguments: str) -> None:
        assert self.pg_ctl is not None
        assert self.data_dir is not None
        command = [*(self.run_as or []), str(self.pg_ctl), *arguments, "-D", str(self.data_dir)]
        subprocess.run(command, check=True, capture_output=True)

    def halt(self) -> None:
        """Stop the server at once, as a crash or a network cut would look to clients."""
        self._pg_ctl("stop", "-w", "-m", "immediate")

    def resume(self) -> None:
        """Start the server again on the same port."""
        assert self.data_dir is not None
        self._pg_ctl(
            "start", "-w", "-l", str(self.data_dir.parent / "server.log"), "-o", self.options
        )

    def stop(self) -> None:
        if self.data_dir is None or self.pg_ctl is None:
            return
        subprocess.run(
            [
                *(self.run_as or []),
                str(self.pg_ctl),
                "stop",
                "-D",
                str(self.data_dir),
                "-m",
                "fast",
            ],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(self.data_dir.parent, ignore_errors=True)


def _binaries() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    return Path(candidates[0]).parent if candidates else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


#: The role that owns each database ``create_database`` makes: like an application's own role,
#: it may do anything to its database and nothing beyond it (no superuser).
APP_ROLE = "runspan_app"


def create_database(admin_url: str, *, owner: str | None = APP_ROLE) -> str:
    """A new, empty database on the server, owned by ``owner`` (made if missing, with the admin
    URL's password); returns its URL as that role. ``owner=None``: the admin's own."""
    name = f"runspan_test_{uuid.uuid4().hex[:12]}"
    admin = make_url(admin_url)
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        if owner is not None:
            password = admin.password
            login = (
                f"LOGIN PASSWORD '{str(password).replace(chr(39), chr(39) * 2)}'"
                if password
                else "LOGIN"
            )
            connection.execute(
                text(
                    f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{owner}')"
                    f' THEN CREATE ROLE "{owner}" {login}; END IF; END $$'
                )
            )
            connection.execute(text(f'CREATE DATABASE "{name}" OWNER "{owner}"'))
        else:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    url = admin.set(database=name)
    if owner is not None:
        url = url.set(username=owner)
    return url.render_as_string(hide_password=False)


def _reader_role(url: str) -> str:
    return f"reader_{make_url(url).database}".lower()[:63]


def add_reader(admin_url: str, url: str) -> str:
    """A role that can only read the runspan database at ``url`` (``runspan db create-reader``,
    run as the admin); returns its URL."""
    from runspan.storage import create_reader  # noqa: PLC0415 - the package imports this one

    admin = make_url(admin_url)
    _, reader = create_reader(
        _reader_role(url),
        admin.set(database=make_url(url).database),
        password=admin.password,
        execute=True,
    )
    return reader.render_as_string(hide_password=False)


def drop_database(admin_url: str, url: str) -> None:
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        name = make_url(url).database
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(text(f'DROP ROLE IF EXISTS "{_reader_role(url)}"'))
    engine.dispose()


def start(*, fsync: bool = False) -> PostgresServer:
    """Start a cluster, or use ``RUNSPAN_TEST_POSTGRES_URL``.

    ``fsync=False`` (for tests) trades crash safety for speed; benchmarks keep it on.

    Raises:
        FileNotFoundError: no PostgreSQL binaries on this machine (the reason to skip).
        RuntimeError: the binaries exist but the cluster did not start.
    """
    given = os.environ.get(URL_ENV)
    if given:
        return PostgresServer(url=given)
    bindir = _binaries()
    if bindir is None:
        raise FileNotFoundError(f"no PostgreSQL binaries (initdb) here, and {URL_ENV} is unset")
    run_as: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="runspan-pg-"))
    if os.geteuid() == 0:
        run_as = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, user="postgres")
    data = root / "data"
    port = _free_port()
    options = f"-p {port} -c listen_addresses=127.0.0.1 -k {root} -c max_connections=200"
    if not fsync:
        options += (
            " -c fsync=off"  # survives a server crash (the OS keeps the WAL), not a power cut
        )
    steps = [
        [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        [
            str(bindir / "pg_ctl"),
            "start",
            "-D",
            str(data),
            "-w",
            "-l",
            str(root / "server.log"),
            "-o",
            options,
        ],
    ]
    for step in steps:
        done = subprocess.run([*run_as, *step], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            shutil.rmtree(root, ignore_errors=True)
            raise RuntimeError(f"{step[0]} failed: {done.stderr or done.stdout}")
    return PostgresServer(
        url=f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres",
        data_dir=data,
        pg_ctl=bindir / "pg_ctl",
        run_as=run_as,
        options=options,
    )


@contextmanager
def serving(url: str | None = None, *, fsync: bool = True) -> Iterator[str]:
    """The URL of a server to create databases on: ``url`` if given, else a cluster started
    for the block (fsync on by default: for benchmarks) and stopped after it, also when the
    process is killed (SIGTERM) meanwhile."""
    if url is not None:
        yield url
        return
    server = start(fsync=fsync)
    # Python's default for SIGTERM ends the process without running finally blocks, and a
    # cluster that pg_ctl started outlives it: leave through them instead. (Only the main thread
    # can set a handler.)
    handled = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _leave) if handled else None
    try:
        yield server.url
    finally:
        server.stop()
        if handled:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _leave(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)

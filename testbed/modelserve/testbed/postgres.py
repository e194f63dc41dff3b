"""PostgreSQL from Debian's packages, as a private server on a loopback port."""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from modelserve.testbed.processes import ManagedProcess, free_port, run

_SEARCH = ("/usr/lib/postgresql",)


def find_bindir() -> Path | None:
    """The newest installed PostgreSQL's bin folder (Debian keeps one per major version)."""
    for root in _SEARCH:
        versions = sorted(Path(root).glob("*/bin/postgres"), key=lambda p: int(p.parts[-3]))
        if versions:
            return versions[-1].parent
    found = shutil.which("postgres")
    return Path(found).resolve().parent if found else None


def ensure_installed() -> Path:
    """Install Debian's postgresql package when no server is on the machine."""
    bindir = find_bindir()
    if bindir is None:
        print("testbed: installing PostgreSQL from Debian's packages", flush=True)
        env = {"DEBIAN_FRONTEND": "noninteractive"}
        run(["apt-get", "update", "-q"], env=env)
        run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql"], env=env)
        bindir = find_bindir()
    if bindir is None:
        raise RuntimeError("PostgreSQL is not installed and could not be installed with apt-get")
    return bindir


@dataclass
class PostgresServer:
    host: str
    port: int
    user: str
    password: str
    process: ManagedProcess
    data: Path

    def dsn(self, database: str = "postgres") -> str:
        """A libpq URL; SQLAlchemy wants the `postgresql+psycopg://` form of the same."""
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.dsn(name)

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def stop(self) -> None:
        """Stop for good: the data goes too."""
        self.process.stop()
        shutil.rmtree(self.data, ignore_errors=True)

    def pause(self) -> None:
        """Stop the server but keep its data: an outage, ended by `resume`."""
        self.process.stop()

    def resume(self, timeout: float = 60.0) -> None:
        self.process.start()
        self.wait_accepting(timeout)

    def wait_accepting(self, timeout: float) -> None:
        def accepting() -> bool:
            try:
                with psycopg.connect(self.dsn(), connect_timeout=2):
                    return True
            except psycopg.OperationalError:
                return False

        self.process.wait_until(accepting, timeout, "accepting connections")


def _server_user() -> str | None:
    """PostgreSQL refuses to run as root: then it runs as Debian's `postgres` user."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        run(["useradd", "--system", "--home-dir", "/var/lib/postgresql", "postgres"])
    return "postgres"


def start_postgres(
    *, port: int = 0, user: str = "modelserve", timeout: float = 60.0, log_folder: Path
) -> PostgresServer:
    bindir = ensure_installed()
    server_user = _server_user()
    # The data folder must be reachable by the server's user, which private
    # temporary folders (pytest's, for one) are not: it gets its own under /tmp.
    data_root = Path(tempfile.mkdtemp(prefix="modelserve-pg-"))
    data = data_root / "data"
    password = secrets.token_urlsafe(18)
    pwfile = data_root / "pwfile"
    pwfile.write_text(password + "\n")
    if server_user:
        entry = pwd.getpwnam(server_user)
        os.chown(data_root, entry.pw_uid, entry.pw_gid)
        os.chown(pwfile, entry.pw_uid, entry.pw_gid)
    initdb: list[str | os.PathLike[str]] = [
        bindir / "initdb",
        f"--pgdata={data}",
        f"--username={user}",
        f"--pwfile={pwfile}",
        "--auth=scram-sha-256",
        "--encoding=UTF8",
        "--no-sync",
    ]
    if server_user:
        run(["runuser", "-u", server_user, "--", *initdb])
    else:
        run(initdb)
    pwfile.unlink()
    port = port or free_port()
    process = ManagedProcess(
        "postgres",
        [
            bindir / "postgres",
            "-D",
            data,
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-k",
            data_root,
            # A test server: fsync buys nothing and costs a lot on a shared disk.
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=200",
        ],
        log_folder / "postgres.log",
        user=server_user,
        # Fast shutdown: SIGTERM would wait for every client to disconnect first.
        stop_signal=signal.SIGINT,
    )
    server = PostgresServer("127.0.0.1", port, user, password, process, data_root)
    process.start()
    try:
        server.wait_accepting(timeout)
    except BaseException:
        server.stop()
        raise
    return server


# --- Schemas: one per test or per service, in a shared database -----------------------------


def schema_url(database_url: str, schema: str) -> str:
    """`database_url` with libpq's options putting every table of its connections in
    `schema` (how each service is given a schema of its own)."""
    return f"{database_url}?options=-csearch_path%3D{schema}"


def create_schema(database_url: str, prefix: str) -> str:
    """A new, empty schema named `prefix_` and a random suffix; its name."""
    schema = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    return schema


def drop_schema(database_url: str, schema: str) -> None:
    """Drop `schema` with everything in it."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@contextlib.contextmanager
def fresh_schema(database_url: str, prefix: str = "t") -> Iterator[str]:
    """A new schema for the block's length (its name), dropped with its tables afterwards."""
    schema = create_schema(database_url, prefix)
    try:
        yield schema
    finally:
        drop_schema(database_url, schema)

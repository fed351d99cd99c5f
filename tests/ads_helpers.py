"""Shared pieces for the ads tests: a tiny world, its clean posts and its ads world, built once a session."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from murmur.data.clean import clean
from murmur.data.sources import ingest
from murmur.world.ads import AdsWorldConfig, generate_ads_world
from murmur.world.generate import WorldConfig, generate_world


@dataclass(frozen=True)
class AdsFixture:
    world: Path
    clean: Path
    ads: Path


def build(root: Path, users: int = 600, impressions_per_day: int = 6000, days: int = 5) -> AdsFixture:
    world = root / "world"
    # No stories: a news burst moves the click rate of its hours (the ads beside it share its topic),
    # which the pCTR tests' held-out days would read as drift; their thresholds were set without them.
    generate_world(world, WorldConfig(users=users, seed=3, archive_users=0, stories=0))
    ingest([str(world / "api")], root / "posts.parquet", progress=False)
    clean(root / "posts.parquet", root / "clean.parquet")
    generate_ads_world(world, root / "ads", AdsWorldConfig(seed=1, impressions_per_day=impressions_per_day, days=days))
    return AdsFixture(world, root / "clean.parquet", root / "ads")


def _pg_bin() -> Path | None:
    import glob
    import shutil

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    which = shutil.which("initdb")
    return Path(which).parent if which else None


class Postgres:
    """A throwaway PostgreSQL server from Debian's package: initdb + pg_ctl in a temp dir, reachable only
    through a unix socket there, run as the ``postgres`` user when the tests run as root."""

    def __init__(self):
        import os
        import shutil
        import socket
        import subprocess
        import tempfile

        self.bin = _pg_bin()
        if self.bin is None:
            raise FileNotFoundError("PostgreSQL is not installed (make postgres installs it)")
        root = self.root = Path(tempfile.mkdtemp(prefix="murmur-pg-"))
        os.chmod(root, 0o711)
        self.data, self.sock = root / "data", root / "sock"
        self.sock.mkdir()
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            runuser = shutil.which("runuser")
            if runuser is None:
                raise FileNotFoundError("running as root needs runuser to start PostgreSQL as another user")
            shutil.chown(root, "postgres", "postgres")
            shutil.chown(self.sock, "postgres", "postgres")
            self.prefix = [runuser, "-u", "postgres", "--"]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._run = subprocess.run
        self._run([*self.prefix, str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                   "--no-sync", "-E", "UTF8"], check=True, capture_output=True)
        opts = f"-k {self.sock} -c listen_addresses='' -p {self.port} -c fsync=off"
        self._run([*self.prefix, str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", opts, "-w", "-l",
                   str(root / "log"), "start"], check=True, capture_output=True)
        self.url = f"postgresql+psycopg://postgres@/postgres?host={self.sock}&port={self.port}"

    def stop(self) -> None:
        self._run([*self.prefix, str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"],
                  capture_output=True)
        import shutil

        shutil.rmtree(self.root, ignore_errors=True)

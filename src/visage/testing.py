"""A real ``visage serve`` process on a free loopback port with its own data dir: a harness.

The tests, the benchmarks (through ``tests/conftest.py``) and the one evaluation that
must go through the server, the gallery replication (``visage eval gallery``, which is
why this ships in the package), start one with :class:`LocalServer` and talk to it with
the real boto3 client, exactly as a user would::

    with LocalServer(Path(tmp)) as server:
        rekognition = server.client()

It makes an admin key in the server's store before starting it (unless the store has
keys already), and :meth:`LocalServer.create_key` makes more, with any policy. With
``--tls-cert``/``--tls-key`` among its arguments it speaks HTTPS, trusting ``ca_file``.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from visage.config import Settings, SettingsError
from visage.keys import Credentials, KeyRing
from visage.policy import Policy
from visage.store import open_store


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalServer:
    """``visage serve`` in a process group of its own (so a signal reaches uvicorn's workers)."""

    def __init__(
        self,
        data_dir: Path,
        s3_root: Path | None = None,
        extra_args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        start_timeout: float = 120.0,
        ca_file: Path | None = None,
        make_key: bool = True,
    ) -> None:
        self.data_dir, self.s3_root = data_dir, s3_root
        self.extra_args, self.env, self.start_timeout = extra_args, env or {}, start_timeout
        self.ca_file, self.make_key = ca_file, make_key
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        data_dir.mkdir(parents=True, exist_ok=True)
        #: The admin key made for this server by :meth:`start`, or None when its store already had keys
        #: (or ``make_key`` is false: ``visage serve`` then makes the first one, and prints it).
        self.credentials: Credentials | None = None
        self.log_path = data_dir / "server.log"

    @property
    def settings(self) -> Settings:
        """The settings of the server's store and keys, as ``visage serve`` reads them."""
        return Settings.from_env(
            {**os.environ, **self.env}, data_dir=self.data_dir, store=_flag(self.extra_args, "--store")
        )

    @property
    def url(self) -> str:
        scheme = "https" if "--tls-cert" in self.extra_args else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    @contextmanager
    def keys(self) -> Iterator[KeyRing]:
        """The key ring of the server's store (opened for the call, as another process would)."""
        store = open_store(self.settings)
        try:
            yield KeyRing.open(store, self.settings.secret_key_path, self.settings.keys_path)
        finally:
            store.close()

    def create_key(self, policy: Policy, name: str = "test") -> Credentials:
        """A new key of the server's store with this policy."""
        with self.keys() as ring:
            return ring.create(policy, name, by="visage.testing")[1]

    def start(self) -> LocalServer:
        try:
            if self.make_key:
                with self.keys() as ring:
                    if not ring.keys():
                        self.credentials = ring.create(Policy.admin(), "visage.testing", by="visage.testing")[1]
        except SettingsError:
            pass  # visage serve refuses them too, and says why (below)
        self.port = free_port()
        command = [
            sys.executable,
            "-m",
            "visage.cli",
            "serve",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
        ]
        if self.s3_root is not None:
            command += ["--s3-root", str(self.s3_root)]
        command += list(self.extra_args)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env}, start_new_session=True
            )
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"visage serve exited with {self.process.returncode}: {self.log_path.read_text()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1, context=self._ssl()) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"visage serve did not answer within {self.start_timeout:.0f} s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Send ``sig`` to the whole process group (SIGKILL simulates a crash) and wait."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def client(self, service: str = "rekognition", credentials: Credentials | None = None, retry: bool = True) -> Any:
        """A boto3 client for this server, signed with ``credentials`` (default: its key, or
        else the first active admin key of its store); with ``retry`` false it makes one attempt
        per call, so that each failure is seen."""
        import boto3
        from botocore.config import Config

        credentials = credentials or self.credentials or self._admin_credentials()
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id=credentials.access_key_id,
            aws_secret_access_key=credentials.secret_access_key,
            verify=str(self.ca_file) if self.ca_file is not None else None,
            config=Config(
                retries={"max_attempts": 1} if retry else {"mode": "standard", "total_max_attempts": 1},
                read_timeout=300,
                max_pool_connections=16,
            ),
        )

    def _admin_credentials(self) -> Credentials:
        with self.keys() as ring:
            for key in ring.keys():
                found = ring.lookup(key.access_key_id) if key.policy.is_admin else None
                if found is not None:
                    return Credentials(key.access_key_id, found.secret_access_key)
        raise RuntimeError(f"The store of {self.data_dir} has no active admin key.")

    def _ssl(self) -> ssl.SSLContext | None:
        return ssl.create_default_context(cafile=str(self.ca_file)) if self.ca_file is not None else None

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()


def _flag(args: tuple[str, ...], name: str) -> str | None:
    """The value of ``name`` among command-line arguments (``--store URL`` or ``--store=URL``), if given."""
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None

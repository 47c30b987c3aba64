"""A real ``visage serve`` process on a free loopback port with its own data dir: a harness.

The tests, the benchmarks (through ``tests/conftest.py``) and the one evaluation that
must go through the server, the gallery replication (``visage eval gallery``, which is
why this ships in the package), start one with :class:`LocalServer` and talk to it with
the real boto3 client, exactly as a user would::

    with LocalServer(Path(tmp)) as server:
        rekognition = server.client()
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from visage.config import Settings
from visage.keys import Credentials, KeyStore


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
    ) -> None:
        self.data_dir, self.s3_root = data_dir, s3_root
        self.extra_args, self.env, self.start_timeout = extra_args, env or {}, start_timeout
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        data_dir.mkdir(parents=True, exist_ok=True)
        keys = KeyStore(Settings(data_dir=data_dir).keys_path)
        #: The key made for this server, or None when the data dir already had keys.
        self.credentials: Credentials | None = keys.create() if not keys.access_key_ids() else None
        self.log_path = data_dir / "server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LocalServer:
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
                with urllib.request.urlopen(f"{self.url}/health", timeout=1) as response:
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

    def client(self, service: str = "rekognition", credentials: Credentials | None = None) -> Any:
        """A boto3 client for this server, signed with ``credentials`` (default: its key)."""
        import boto3
        from botocore.config import Config

        credentials = credentials or self.credentials
        if credentials is None:
            keys = KeyStore(Settings(data_dir=self.data_dir).keys_path)
            key_id = keys.access_key_ids()[0]
            credentials = Credentials(key_id, keys.secret(key_id) or "")
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id=credentials.access_key_id,
            aws_secret_access_key=credentials.secret_access_key,
            config=Config(retries={"max_attempts": 1}, read_timeout=300, max_pool_connections=16),
        )

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

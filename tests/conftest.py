"""Shared fixtures: the engine (loaded once), real images, and the evaluation data folder.

Tests that need ``VISAGE_EVAL_DATA`` (default ``../shared/eval``) skip with the
reason when it is absent, except under ``CI=true``, where its absence fails them.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from visage.engine import Engine
from visage.evaluation.data import eval_data_dir


def _require(path: Path, what: str) -> Path:
    if path.exists():
        return path
    message = f"{what} not found at {path} (set VISAGE_EVAL_DATA to the shared eval folder)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"under CI the evaluation data must be present: {message}")
    pytest.skip(message)


@pytest.fixture(scope="session")
def eval_data() -> Path:
    return _require(eval_data_dir(), "evaluation data folder")


@pytest.fixture(scope="session")
def portraits(eval_data: Path) -> Path:
    return _require(eval_data / "portraits", "portraits folder")


@pytest.fixture(scope="session")
def lfw(eval_data: Path) -> Path:
    return _require(eval_data / "lfw", "LFW folder")


@pytest.fixture(scope="session")
def engine() -> Engine:
    return Engine()


def encode(rgb: np.ndarray, fmt: str = "JPEG", **params: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, fmt, **params)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def astronaut_rgb() -> np.ndarray:
    return skdata.astronaut()


@pytest.fixture(scope="session")
def astronaut_jpeg(astronaut_rgb: np.ndarray) -> bytes:
    return encode(astronaut_rgb, "JPEG", quality=95)


# A real server ---------------------------------------------------------------------------


class RunningServer:
    """A ``visage serve`` process on a free loopback port with its own data dir."""

    def __init__(self, data_dir: Path, s3_root: Path, extra_args: tuple[str, ...] = ()) -> None:
        from visage.keys import KeyStore

        self.data_dir, self.s3_root = data_dir, s3_root
        keys = KeyStore(data_dir / "keys.json")
        self.credentials = keys.create() if not keys.access_key_ids() else None
        self.extra_args = extra_args
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> RunningServer:
        self.port = _free_port()
        command = [
            sys.executable, "-m", "visage.cli", "serve", "--port", str(self.port),
            "--data-dir", str(self.data_dir), "--s3-root", str(self.s3_root), *self.extra_args,
        ]
        self.log = open(self.data_dir / f"server-{self.port}.log", "wb")
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {(self.data_dir / f'server-{self.port}.log').read_text()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("server did not start within 120 s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()

    def client(self, service: str = "rekognition", credentials: Any = None) -> Any:
        import boto3
        from botocore.config import Config

        from visage.keys import KeyStore

        credentials = credentials or self.credentials
        if credentials is None:
            keys = KeyStore(self.data_dir / "keys.json")
            key_id = keys.access_key_ids()[0]
            secret = keys.secret(key_id)
        else:
            key_id, secret = credentials.access_key_id, credentials.secret_access_key
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
            config=Config(retries={"max_attempts": 1}, read_timeout=300),
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("server")
    (root / "s3").mkdir()
    running = RunningServer(root / "data", root / "s3").start()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def rekognition(server: RunningServer) -> Any:
    return server.client()

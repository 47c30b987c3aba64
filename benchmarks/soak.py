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
all, and deletes only faces it indexed, so that it knows what must be there at the end. A
DeleteFaces deletes one of them, so the collection grows (by about a face for every seven
calls); with ``--steady`` it deletes every face its client has indexed and not yet deleted, so
the collection stays within a few faces of its size at the start: memory that rises then does
not come from holding more faces.

Reported: throughput, p50 and p99 per operation, errors by code, the 5xx count, and the
server's resident memory (RSS, from psutil) and the faces in the collection every
``--sample-seconds``, as a plot
(benchmarks/results/soak.png), with its trend after warm-up (MiB a minute, a least-squares
line). The server runs on its default allocator, jemalloc where it is installed (the report
names the library its memory map held). Then, unless ``--baseline none``, the same soak runs
again on a fresh store with the server on glibc's malloc (``visage serve --allocator
system``), and a table sets the two side by side: the baseline in the same run. Goals,
checked on the first soak and printed:

- zero 5xx responses;
- zero lost faces: every face an acknowledged IndexFaces returned is listed at the end
  (unless an acknowledged DeleteFaces removed it), every face an acknowledged DeleteFaces
  removed is not, and the collection's FaceCount equals what ListFaces lists;
- RSS grows at most 50 MiB after warm-up (the highest sample after the first
  ``--warmup-minutes``, default a fifth of the run and at most 5, over the sample then).

    nice -n 10 python benchmarks/soak.py                       # 2 x 30 minutes, 20,000 faces
    nice -n 10 python benchmarks/soak.py --store postgres      # the same on PostgreSQL
    nice -n 10 python benchmarks/soak.py --steady              # the collection's size held steady
    python benchmarks/soak.py --minutes 2 --faces 2000 --baseline none   # a quick try

Results: ``soak`` (SQLite) or ``soak_postgres``, ``_steady`` appended with ``--steady``, each
with its plot.
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
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import RunningServer

from _results import RESULTS, write_results
from search_scale import Distractors, postgres_databases
from visage.api.allocator import in_use
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
MAX_DELETE = 4096  # DeleteFaces' FaceIds, at most (the service model)


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

    @property
    def holds(self) -> int:
        """How many of its faces the collection holds (read by the sampler while the client runs)."""
        return len(self.indexed) - len(self.deleted)


def one_call(client: Client, operation: str, probes: list[bytes], rng: random.Random, steady: bool) -> None:
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
            face_ids = client.live()[:MAX_DELETE] if steady else [rng.choice(client.live())]
            answer = r.delete_faces(CollectionId=c, FaceIds=face_ids)
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


def run_clients(clients: list[Client], probes: list[bytes], seconds: float, requests: int, steady: bool) -> float:
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
            one_call(client, rng.choices(operations, weights)[0], probes, rng, steady)

    threads = [threading.Thread(target=work, args=(client,)) for client in clients]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def sample_rss(
    pid: int, every: float, stop: threading.Event, faces: Any, samples: list[tuple[float, float, int]]
) -> None:
    """Appends (seconds since the start, the server's RSS in MiB, ``faces()``) every ``every`` seconds."""
    process, started = psutil.Process(pid), time.perf_counter()
    while True:
        samples.append((time.perf_counter() - started, process.memory_info().rss / 2**20, faces()))
        if stop.wait(every):
            samples.append((time.perf_counter() - started, process.memory_info().rss / 2**20, faces()))
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


def plot(runs: list[Soak], warmup_s: float, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 3.5))
    for run, colour in zip(runs, ("tab:blue", "tab:orange"), strict=False):
        label = "jemalloc" if "jemalloc" in run.loaded else run.loaded
        axes.plot([t / 60 for t, _, _ in run.samples], [m for _, m, _ in run.samples], color=colour, label=label)
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


@dataclass
class Soak:
    """One soak's outcome: the calls, what the server acknowledged and lists, and its memory.
    (Made once the clients have stopped, so what is gathered from them is gathered once.)"""

    allocator: str  # what was asked for
    loaded: str  # what the server's memory map held: the jemalloc library, or "glibc's malloc"
    elapsed: float
    clients: list[Client]
    listed: dict[str, str]
    face_count: int
    samples: list[tuple[float, float, int]]  # (seconds since the clients started, RSS in MiB, faces held)
    warmup_s: float

    @cached_property
    def calls(self) -> list[tuple[float, str, float, str]]:
        return [call for client in self.clients for call in client.calls]

    @cached_property
    def indexed(self) -> dict[str, str]:
        return {face_id: name for client in self.clients for face_id, name in client.indexed.items()}

    @cached_property
    def deleted(self) -> set[str]:
        return set().union(*(client.deleted for client in self.clients))

    @property
    def lost(self) -> list[str]:
        return sorted(f for f in self.indexed if f not in self.deleted and f not in self.listed)

    @property
    def undeleted(self) -> list[str]:
        return sorted(f for f in self.deleted if f in self.listed)

    @cached_property
    def errors(self) -> Counter[str]:
        return Counter(outcome for _, _, _, outcome in self.calls if outcome != "ok")

    @property
    def server_errors(self) -> int:
        return sum(n for outcome, n in self.errors.items() if outcome[0] == "5")

    @property
    def no_response(self) -> int:
        return sum(n for outcome, n in self.errors.items() if outcome.startswith("no response"))

    @property
    def at_warmup(self) -> float:
        return self.after_warmup[0][1] if self.after_warmup else self.samples[-1][1]

    @property
    def after_warmup(self) -> list[tuple[float, float, int]]:
        return [sample for sample in self.samples if sample[0] >= self.warmup_s]

    @property
    def at_warmup_faces(self) -> int:
        return self.after_warmup[0][2] if self.after_warmup else self.samples[-1][2]

    @property
    def highest_after_warmup(self) -> float:
        return max((mib for _, mib, _ in self.after_warmup), default=self.at_warmup)

    @property
    def growth(self) -> float:
        """The goal's measure: the highest sample after warm-up over the sample then, in MiB."""
        return round(self.highest_after_warmup - self.at_warmup, 1)

    @property
    def slope(self) -> float:
        """The trend after warm-up, in MiB a minute (a least-squares line through the samples)."""
        after = np.array([(t / 60, mib) for t, mib, _ in self.after_warmup])
        return round(float(np.polyfit(after[:, 0], after[:, 1], 1)[0]), 3) if len(after) > 2 else 0.0

    def goals(self) -> dict[str, bool]:
        return {
            "zero_5xx": self.server_errors == 0 and self.no_response == 0,
            "zero_lost_faces": not self.lost and not self.undeleted and self.face_count == len(self.listed),
            "rss_growth_at_most_50_mib": self.growth <= MAX_RSS_GROWTH_MIB,
        }


def soak(args: argparse.Namespace, allocator: str, images: list[Path], warmup_s: float) -> tuple[Soak, str]:
    """One soak on a fresh store, the server on ``allocator``; also the store's description."""
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

    server = RunningServer(root / "data", extra_args=(*store_args, "--allocator", allocator)).start()
    samples: list[tuple[float, float, int]] = []
    stop = threading.Event()
    assert server.process is not None
    loaded = allocator_in(server.process.pid)
    try:
        clients = [Client(n, server.client(retry=False), rest[n :: args.clients]) for n in range(args.clients)]
        held = lambda: args.faces + sum(client.holds for client in clients)  # noqa: E731
        sampler = threading.Thread(
            target=sample_rss, args=(server.process.pid, args.sample_seconds, stop, held, samples)
        )
        sampler.start()
        print(f"{args.clients} clients for at most {args.minutes:g} min or {args.requests:,} calls, on {loaded} ...")
        elapsed = run_clients(clients, probes, args.minutes * 60, args.requests, args.steady)
        stop.set()
        sampler.join()
        admin = server.client(retry=False)
        listed = listed_faces(admin)
        face_count = admin.describe_collection(CollectionId=COLLECTION)["FaceCount"]
    finally:
        stop.set()
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
    return Soak(allocator, loaded, elapsed, clients, listed, face_count, samples, warmup_s), backend


def allocator_in(pid: int) -> str:
    """The allocator process ``pid`` runs on, from its memory map."""
    return str(in_use(Path(f"/proc/{pid}/maps")) or "glibc's malloc")


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
    parser.add_argument(
        "--steady",
        action="store_true",
        help="each DeleteFaces deletes every face its client holds, so the collection's size stays steady",
    )
    parser.add_argument(
        "--baseline",
        choices=("system", "none"),
        default="system",
        help="after the soak on the server's default allocator (jemalloc), soak again on glibc's malloc "
        "(visage serve --allocator system) to compare; none: only the first",
    )
    args = parser.parse_args()
    warmup_s = 60 * (args.warmup_minutes if args.warmup_minutes is not None else min(5.0, args.minutes / 5))

    images = sorted((eval_data_dir() / "lfw" / "lfw-deepfunneled").glob("*/*.jpg"))
    random.Random(0).shuffle(images)
    runs = []
    for allocator in ("jemalloc", "system") if args.baseline == "system" else ("jemalloc",):
        run, backend = soak(args, allocator, images, warmup_s)
        runs.append(run)
    main_run = runs[0]
    calls, elapsed = main_run.calls, main_run.elapsed
    goals = main_run.goals()
    minutes = elapsed / 60
    name = ("soak" if args.store == "sqlite" else "soak_postgres") + ("_steady" if args.steady else "")
    finished = "the full run" if minutes >= args.minutes - 0.1 else f"stopped by --requests after {minutes:.1f} min"
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

    lines = [
        f"Soak: {args.clients} boto3 clients for {minutes:.1f} min ({finished}; asked for {args.minutes:g} min or "
        f"{args.requests:,} calls) against one `visage serve` (1 worker, {backend}, on {main_run.loaded}) whose "
        f"collection held {args.faces:,} faces at the start ({args.real:,} real LFW vectors, the rest face-like "
        f"distractors); {len(calls):,} calls, {len(calls) / elapsed:.1f} per second, on a {psutil.cpu_count()}-core "
        "machine shared with other work. "
        + (
            "Each DeleteFaces deleted every face its client held (`--steady`), to hold the collection's size."
            if args.steady
            else "Each DeleteFaces deleted one face, so the collection grew."
        ),
        "",
        "| operation | calls | per s | p50 ms | p99 ms | errors |",
        "|---|---|---|---|---|---|",
    ]
    for operation, row in per_operation.items():
        lines.append(
            f"| {operation} | {row['calls']:,} | {row['per_s']} | {row['p50_ms']} | {row['p99_ms']} | {row['errors']} |"
        )
    errors = main_run.errors
    lines += [
        "",
        f"- 5xx responses: {main_run.server_errors}; calls without a response: {main_run.no_response}; errors by "
        "code: " + (", ".join(f"{code} x{n}" for code, n in errors.most_common()) or "none") + ".",
        f"- Faces: {len(main_run.indexed):,} acknowledged by IndexFaces, {len(main_run.deleted):,} of them "
        f"acknowledged deleted; at the end ListFaces lists {len(main_run.listed):,} and FaceCount is "
        f"{main_run.face_count:,}; lost: {len(main_run.lost)} indexed faces missing, {len(main_run.undeleted)} "
        "deleted faces still listed.",
        f"- Server RSS: {main_run.samples[0][1]:.0f} MiB at the start, {main_run.at_warmup:.0f} MiB after the "
        f"{warmup_s / 60:g}-minute warm-up, at most {main_run.highest_after_warmup:.0f} MiB after it, "
        f"{main_run.samples[-1][1]:.0f} MiB at the end: growth after warm-up {main_run.growth:g} MiB (goal <= 50); "
        f"trend after warm-up {main_run.slope:+.3f} MiB a minute. The collection held {main_run.at_warmup_faces:,} "
        f"faces after warm-up and {main_run.samples[-1][2]:,} at the end. "
        f"Plot: [`benchmarks/results/{name}.png`](../benchmarks/results/{name}.png).",
        "- Goals: "
        + ", ".join(f"{goal.replace('_', ' ')} {'met' if met else 'NOT MET'}" for goal, met in goals.items())
        + ".",
    ]
    if len(runs) > 1:
        lines += [
            "",
            "The same soak, on a fresh store, with the server on each allocator, one after the other in this run:",
            "",
            "| allocator | calls | per s | 5xx | lost | RSS at start | after warm-up | highest after | at end "
            "| growth after warm-up | trend, MiB a minute | faces after warm-up | faces at end |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for run in runs:
            lines.append(
                f"| {run.loaded} | {len(run.calls):,} | {len(run.calls) / run.elapsed:.1f} | "
                f"{run.server_errors + run.no_response} | {len(run.lost) + len(run.undeleted)} | "
                f"{run.samples[0][1]:.0f} | {run.at_warmup:.0f} | {run.highest_after_warmup:.0f} | "
                f"{run.samples[-1][1]:.0f} | {run.growth:g} MiB | {run.slope:+.3f} | {run.at_warmup_faces:,} | "
                f"{run.samples[-1][2]:,} |"
            )
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
            "steady": args.steady,
            "calls": len(calls),
            "per_s": round(len(calls) / elapsed, 2),
            "operations": per_operation,
            "errors": dict(errors),
            "server_errors_5xx": main_run.server_errors,
            "no_response": main_run.no_response,
            "faces_indexed": len(main_run.indexed),
            "faces_deleted": len(main_run.deleted),
            "faces_listed": len(main_run.listed),
            "face_count": main_run.face_count,
            "lost": len(main_run.lost),
            "deleted_but_listed": len(main_run.undeleted),
            "warmup_s": warmup_s,
            "goals": goals,
            "allocators": [
                {
                    "asked": run.allocator,
                    "loaded": run.loaded,
                    "minutes": round(run.elapsed / 60, 2),
                    "calls": len(run.calls),
                    "server_errors_5xx": run.server_errors,
                    "no_response": run.no_response,
                    "lost": len(run.lost),
                    "deleted_but_listed": len(run.undeleted),
                    "rss_mib_faces": [[round(t, 1), round(mib, 1), faces] for t, mib, faces in run.samples],
                    "rss_growth_mib": run.growth,
                    "rss_trend_mib_per_minute": run.slope,
                    "goals": run.goals(),
                }
                for run in runs
            ],
        },
        markdown,
    )
    plot(  # after write_results, which records whether the tree differs from its commit
        runs,
        warmup_s,
        RESULTS / f"{name}.png",
        f"visage serve RSS ({backend.split(',')[0]}), {args.clients} clients, {args.faces:,}-face collection, "
        f"{minutes:.1f} min",
    )
    print("goals:", ", ".join(f"{goal} {'met' if met else 'NOT MET'}" for goal, met in goals.items()))


if __name__ == "__main__":
    main()

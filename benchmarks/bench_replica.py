"""Searches on a streaming standby: throughput, and fallback while the standby stops and restarts.

    python benchmarks/bench_replica.py [--rows 10000] [--threads 4] [--seconds 30]

Starts a standby of the embedded server (tests/standby.py: pg_basebackup -R, its own socket),
fills queryapp.BenchItem with --rows random 384-d unit vectors (HNSW index), then:

1. throughput for 10 s each: --threads threads searching the primary only, the standby only,
   and half the threads on each (explicit ``.using()``; both servers share this machine's cores);
2. the issue's target, 0 failed searches under a --seconds load while the standby is stopped
   (fast shutdown) a quarter of the way in and started again at half time: every search goes
   through ``vectorsearch.replicas.with_fallback``, as the query layer's will.

Prints searches/s, latency percentiles per phase, errors, and where searches were served.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

from _setup import setup, truncate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    setup(384)

    import numpy as np
    from django.db import connections
    from django.db.models.expressions import RawSQL
    from django.test import override_settings
    from pgvector.django import CosineDistance

    from tests.queryapp.models import BenchItem
    from tests.standby import Standby
    from vectorsearch import replicas
    from vectorsearch.db import apply_settings

    rng = np.random.default_rng(0)
    if BenchItem.objects.count() != args.rows:
        truncate("queryapp_benchitem")
        vectors = rng.standard_normal((args.rows, 384)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        BenchItem.objects.bulk_create(
            (BenchItem(category=i % 10, embedding=v) for i, v in enumerate(vectors)),
            batch_size=2000,
        )
    queries = rng.standard_normal((200, 384)).astype(np.float32)

    standby = Standby(connections["default"].settings_dict, connections["replica"].settings_dict)
    reason = standby.unavailable()
    if reason:
        raise SystemExit(f"No standby: {reason}")
    t0 = time.monotonic()
    standby.create()
    standby.wait_for_database(connections["default"].settings_dict["NAME"])
    standby.wait_replayed()
    print(f"{args.rows:,} rows x 384; standby created in {time.monotonic() - t0:.1f}s")

    def search(alias: str, i: int) -> list[tuple[int, bool]]:
        with apply_settings(alias, {"hnsw.ef_search": 40}):
            return list(
                BenchItem.objects.using(alias)
                .annotate(standby=RawSQL("pg_is_in_recovery()", []))
                .order_by(CosineDistance("embedding", queries[i % len(queries)]))
                .values_list("pk", "standby")[:10]
            )

    def load(seconds: float, pick, record) -> None:  # type: ignore[no-untyped-def]
        stop_at = time.monotonic() + seconds

        def worker(n: int) -> None:
            i = n
            try:
                while time.monotonic() < stop_at:
                    started = time.monotonic()
                    try:
                        rows = pick(n, i)
                        record(started, time.monotonic() - started, rows[0][1], None)
                    except Exception as e:  # counted: the target is none
                        record(started, time.monotonic() - started, None, repr(e))
                    i += args.threads
            finally:
                for alias in ("default", "replica"):
                    connections[alias].close()

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(args.threads)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def summary(durations: list[float]) -> str:
        if not durations:
            return "no searches"
        ms = sorted(d * 1000 for d in durations)
        p = lambda q: ms[min(len(ms) - 1, int(q * len(ms)))]  # noqa: E731
        return f"p50 {p(0.5):.1f} ms, p99 {p(0.99):.1f} ms, max {ms[-1]:.1f} ms"

    print(f"\n1. throughput, {args.threads} threads, 10 s each (ef_search 40, k 10)")
    for name, pick in (
        ("primary only", lambda n, i: search("default", i)),
        ("standby only", lambda n, i: search("replica", i)),
        ("half on each", lambda n, i: search("replica" if n % 2 else "default", i)),
    ):
        log: list[float] = []
        load(10.0, pick, lambda s, d, served, error, log=log: log.append(d))
        print(f"   {name:13} {len(log) / 10:7.0f} searches/s  {summary(log)}")

    print(f"\n2. fallback: {args.seconds:.0f} s load, standby stopped and started again")
    events: dict[str, float] = {}
    log2: list[tuple[float, float, bool | None, str | None]] = []
    lock = threading.Lock()
    begin = time.monotonic()

    def operator() -> None:
        time.sleep(args.seconds / 4)
        events["stop"] = time.monotonic() - begin
        standby.stop("fast")
        events["stopped"] = time.monotonic() - begin
        time.sleep(args.seconds / 4)
        events["start"] = time.monotonic() - begin
        standby.start()
        events["started"] = time.monotonic() - begin

    def record(started: float, duration: float, served: bool | None, error: str | None) -> None:
        with lock:
            log2.append((started - begin, duration, served, error))

    with override_settings(VECTORSEARCH={"SEARCH_REPLICAS": ["replica"]}):
        replicas.reset()
        thread = threading.Thread(target=operator)
        thread.start()
        load(
            args.seconds,
            lambda n, i: replicas.with_fallback(BenchItem, lambda a: search(a, i)),
            record,
        )
        thread.join()
    errors = [e for *_, e in log2 if e]
    print(
        f"   {len(log2):,} searches, {len(errors)} failed"
        + (f" (first: {errors[0]})" if errors else "")
        + f"; pg_ctl stop {events['stopped'] - events['stop']:.2f}s at {events['stop']:.1f}s, "
        f"start {events['started'] - events['start']:.2f}s at {events['start']:.1f}s"
    )
    phases = (
        ("before the stop", 0.0, events["stop"]),
        ("stopping", events["stop"], events["stopped"] + 0.5),
        ("standby down", events["stopped"] + 0.5, events["start"]),
        ("after the start", events["started"], args.seconds + 1),
    )
    for name, start, end in phases:
        part = [(d, s) for t, d, s, e in log2 if start <= t < end and not e]
        on_standby = sum(1 for _, s in part if s)
        print(
            f"   {name:16} {len(part):6,} searches, {on_standby:6,} on the standby; "
            f"{summary([d for d, _ in part])}"
        )
    back = [t for t, d, s, e in log2 if s and t > events["started"]]
    if back:
        print(f"   back on the standby {min(back) - events['started']:.2f}s after it started")
    standby.destroy()
    print(f"   mean search {statistics.mean(d for _, d, _, _ in log2) * 1000:.1f} ms")


if __name__ == "__main__":
    main()

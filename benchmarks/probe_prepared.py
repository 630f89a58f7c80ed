"""Where the ORM's share of a search goes: an experiment, not an API.

    python -m benchmarks.probe_prepared [--queries 300]

Runs the same searches four ways, interleaved, on the ``benchmarks.data`` table:

- ``psycopg``: hand-written SQL, prepared, binary (the #3 baseline);
- ``orm``: ``BenchItem.objects[.filter(...)].similar_to(q)[:10]``, as a view would;
- ``binary protocol``: the same queryset built and compiled by Django per search, but executed
  with server-side binding, a binary vector parameter and binary results in one pipeline
  (``BEGIN; SET LOCAL ...; SELECT; COMMIT``), instances built with ``Model.from_db``;
- ``built once``: that, with the queryset built and compiled once and only the vector replaced.

It reaches into private parts (``VectorQuerySet._plan``, the SQL compiler's select list), which
is fine for a measurement and is why none of it is in the app.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()
    os.environ["DJANGO_SETTINGS_MODULE"] = "benchmarks.settings"
    import django

    django.setup()
    import numpy as np
    import psycopg
    from django.db import connection
    from pgvector import Vector
    from pgvector.psycopg import register_vector
    from pgvector.psycopg.vector import register_vector_info
    from psycopg.types import TypeInfo

    from benchmarks.data import connect_settings, queries
    from tests.queryapp.models import BenchItem
    from vectorsearch.conf import get_settings

    vectors = queries(args.queries)
    settings = connect_settings()
    raw = psycopg.connect(
        host=settings["HOST"], user="postgres", dbname="vectorsearch_bench", autocommit=True
    )
    register_vector(raw)
    connection.ensure_connection()
    pg = connection.connection
    search_cursor = psycopg.Cursor(pg)  # server-side binding, unlike Django's ClientCursor
    register_vector_info(search_cursor, TypeInfo.fetch(pg, "vector"))
    other_cursor = psycopg.Cursor(pg)

    def prepare(where: dict[str, Any] | None, q: Any) -> tuple[Any, ...]:
        base = BenchItem.objects.filter(**(where or {}))
        plan = base.similar_to(q, k=10)._plan(rows=True)
        query = plan.queryset.query
        query.vectorsearch_binary = False  # the binary protocol does it for every column
        compiler = query.get_compiler(connection=connection)
        sql, params = compiler.as_sql()
        slots = [i for i, p in enumerate(params) if isinstance(p, str) and p.startswith("[")]
        select, info = compiler.select, compiler.klass_info
        fields = [select[i][0].target.attname for i in info["select_fields"]]
        span = (info["select_fields"][0], info["select_fields"][-1] + 1)
        converters = compiler.get_converters([column[0] for column in select])
        return (
            plan,
            sql.replace("%s::vector", "%s"),
            list(params),
            slots,
            compiler,
            fields,
            span,
            converters,
        )

    def execute(prepared: tuple[Any, ...], q: Any) -> list[Any]:
        plan, sql, params, slots, compiler, fields, (start, end), converters = prepared
        params = list(params)
        for slot in slots:
            params[slot] = Vector(np.asarray(q, dtype=np.float32))
        with pg.pipeline():
            other_cursor.execute("BEGIN")
            for name, value in plan.settings.items():
                other_cursor.execute(f"SET LOCAL {name} = {value}")
            search_cursor.execute(sql, params, binary=True)
            other_cursor.execute("COMMIT")
        rows = []
        for row in compiler.apply_converters(search_cursor.fetchall(), converters):
            obj = BenchItem.from_db("default", fields, row[start:end])
            for name, position in compiler.annotation_col_map.items():
                setattr(obj, name, row[position])
            rows.append(obj)
        return list(plan.finish(rows))

    cases: dict[str, tuple[dict[str, Any] | None, str, dict[str, Any]]] = {
        "unfiltered": (None, "", {"hnsw.ef_search": get_settings()["EF_SEARCH"]}),
        "10% filter": (
            {"category__lt": 10},
            "WHERE category < 10",
            {
                "hnsw.ef_search": get_settings()["FILTERED_EF_SEARCH"],
                "hnsw.iterative_scan": "relaxed_order",
            },
        ),
    }
    for label, (where, where_sql, raw_settings) in cases.items():
        sql = (
            "SELECT id, category, embedding, embedding <=> %s AS distance FROM "
            f"queryapp_benchitem {where_sql} ORDER BY embedding <=> %s LIMIT 10"
        )
        once = prepare(where, vectors[0])

        def baseline(q: Any, sql: str = sql, raw_settings: dict[str, Any] = raw_settings) -> Any:
            for name, value in raw_settings.items():
                raw.execute(f"SET {name} = {value}")
            started = time.perf_counter()
            raw.execute(sql, (q, q), prepare=True, binary=True).fetchall()
            elapsed = time.perf_counter() - started
            raw.execute("RESET ALL")
            return elapsed

        def timed(fn: Callable[[Any], Any]) -> Callable[[Any], float]:
            def run(q: Any) -> float:
                started = time.perf_counter()
                fn(q)
                return time.perf_counter() - started

            return run

        orm = BenchItem.objects.filter(**(where or {}))
        variants: dict[str, Callable[[Any], float]] = {
            "psycopg": baseline,
            "orm": timed(lambda q, orm=orm: list(orm.similar_to(q, k=10))),
            "binary protocol": timed(lambda q, where=where: execute(prepare(where, q), q)),
            "built once": timed(lambda q, once=once: execute(once, q)),
        }
        expected = [row.pk for row in orm.similar_to(vectors[1], k=10)]
        assert [row.pk for row in execute(once, vectors[1])] == expected
        times: dict[str, list[float]] = {name: [] for name in variants}
        names = list(variants)
        for i, vector in enumerate(vectors):
            for name in names[i % len(names) :] + names[: i % len(names)]:
                elapsed = variants[name](vector)
                if i >= 20:
                    times[name].append(elapsed)
        base = statistics.median(times["psycopg"])
        print(f"\n== {label}")
        for name, samples in times.items():
            p50 = statistics.median(samples)
            print(f"{name:20} p50 {p50 * 1000:7.3f} ms  ratio {p50 / base:.2f}")


if __name__ == "__main__":
    main()

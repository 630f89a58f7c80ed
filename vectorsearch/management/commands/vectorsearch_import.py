"""``manage.py vectorsearch_import app_label.Model FILE``: bulk-load vectors made elsewhere."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, IntegrityError, connections, transaction

from ...registry import Registration
from ...sync import copy_rows, write_vectors
from ..utils import Progress, select_registrations

PROGRESS_EVERY = 10_000


class Command(BaseCommand):
    help = (
        "Bulk-load vectors for a registered model from a .npy file (with --ids) or a .jsonl file "
        '(one {"id": ..., "vector": [...]} per line), through COPY ... (FORMAT BINARY), in one '
        "transaction: all rows load or none. Imported vectors have no known source text: they "
        "count as 'unknown' in vectorsearch_status, the backfill keeps them, and an object's next "
        "save re-embeds it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("label", metavar="app_label.Model", help="The registered model.")
        parser.add_argument("file", type=Path, help="A .npy (2-D float array) or .jsonl file.")
        parser.add_argument(
            "--ids",
            type=Path,
            help="For .npy: the primary keys, row by row, as a 1-D .npy array or a text file "
            "with one per line.",
        )
        parser.add_argument(
            "--replace",
            action="store_true",
            help="Replace the vectors the objects already have (default: refuse).",
        )
        parser.add_argument(
            "--identity",
            help="The identity to record (default: the registered embedder's). Give the model "
            "that made the vectors when it is not the registered embedder, so they count as stale.",
        )
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS, help="Database alias.")

    def handle(
        self,
        *args: str,
        label: str,
        file: Path,
        ids: Path | None,
        replace: bool,
        identity: str | None,
        database: str,
        verbosity: int,
        **options: Any,
    ) -> None:
        # call_command(ids="...") skips argparse's type=Path.
        file, ids = Path(file), (Path(ids) if ids is not None else None)
        registrations = select_registrations([label])
        if len(registrations) != 1:
            raise CommandError(
                f"{label} has several registrations ({', '.join(r.label for r in registrations)}); "
                "name one, e.g. app_label.Model.field or app_label.Model@alias."
            )
        registration = registrations[0]
        started = time.monotonic()
        object_ids, vectors = self.load(file, ids)
        self.validate(registration, object_ids, vectors, database)
        identity = identity or registration.embedder.identity
        progress = Progress(
            self.stdout, len(object_ids), registration.label, enabled=verbosity >= 1
        )
        try:
            with transaction.atomic(using=database):
                if registration.is_generic:
                    self.copy_generic(
                        registration, object_ids, vectors, identity, replace, database, progress
                    )
                else:
                    self.update_column(
                        registration, object_ids, vectors, identity, replace, database
                    )
                    progress.update(len(object_ids))
        except IntegrityError as e:
            raise CommandError(
                f"{registration.label}: some of these objects have vectors already. Pass "
                "--replace to overwrite them; nothing was imported."
            ) from e
        progress.close()
        elapsed = time.monotonic() - started
        if verbosity >= 1:
            self.stdout.write(
                self.style.SUCCESS(
                    f"{registration.label}: imported {len(object_ids):,} vectors of "
                    f"{vectors.shape[1]} dimensions in {elapsed:.1f} s "
                    f"({len(object_ids) / max(elapsed, 1e-9):,.0f} vectors/s)."
                )
            )

    # -- reading ----------------------------------------------------------------------------

    def load(self, file: Path, ids: Path | None) -> tuple[list[str], np.ndarray[Any, Any]]:
        if not file.is_file():
            raise CommandError(f"{file} does not exist or is not a file.")
        suffix = file.suffix.lower()
        if suffix == ".npy":
            if ids is None:
                raise CommandError(
                    "A .npy file holds vectors only: pass --ids FILE with their primary keys "
                    "(a .npy array or one per line), or use .jsonl."
                )
            try:
                vectors = np.load(file, allow_pickle=False)
            except (ValueError, OSError) as e:
                raise CommandError(f"{file} is not a readable .npy array: {e}") from e
            return self.load_ids(ids), vectors
        if suffix in (".jsonl", ".ndjson"):
            return self.load_jsonl(file)
        raise CommandError(
            f"Unknown file type {suffix!r}: give a .npy (with --ids) or .jsonl file."
        )

    def load_ids(self, path: Path) -> list[str]:
        if not path.is_file():
            raise CommandError(f"--ids {path} does not exist or is not a file.")
        if path.suffix.lower() == ".npy":
            array = np.load(path, allow_pickle=False)
            if array.ndim != 1:
                raise CommandError(f"--ids {path} must be a 1-D array, not of shape {array.shape}.")
            return [str(x) for x in array.tolist()]
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]

    def load_jsonl(self, path: Path) -> tuple[list[str], np.ndarray[Any, Any]]:
        object_ids: list[str] = []
        rows: list[list[float]] = []
        with path.open() as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    object_ids.append(str(record["id"]))
                    rows.append(record["vector"])
                except (ValueError, KeyError, TypeError) as e:
                    raise CommandError(
                        f'{path}, line {number}: expected {{"id": ..., "vector": [...]}} ({e}).'
                    ) from e
        try:
            vectors = np.asarray(rows, dtype=np.float32)
        except ValueError as e:
            raise CommandError(f"{path}: the vectors differ in length or hold non-numbers.") from e
        return object_ids, vectors

    # -- checking ---------------------------------------------------------------------------

    def validate(
        self,
        registration: Registration,
        object_ids: list[str],
        vectors: np.ndarray[Any, Any],
        using: str,
    ) -> None:
        if vectors.ndim != 2:
            raise CommandError(f"Expected a 2-D array of vectors, got shape {vectors.shape}.")
        if len(object_ids) != len(vectors):
            raise CommandError(
                f"{len(object_ids):,} ids for {len(vectors):,} vectors; they must match."
            )
        if not len(object_ids):
            raise CommandError("The file holds no vectors.")
        expected = (
            getattr(registration.model_field(), "dimensions", None)
            if registration.vector_field
            else registration.embedder.dimensions
        )
        if expected is not None and vectors.shape[1] != expected:
            raise CommandError(
                f"{registration.label} takes vectors of {expected} dimensions; the file's have "
                f"{vectors.shape[1]}."
            )
        if not np.issubdtype(vectors.dtype, np.number):
            raise CommandError(f"The vectors must be numbers, not {vectors.dtype}.")
        finite = np.isfinite(vectors.astype(np.float32, copy=False)).all(axis=1)
        if not finite.all():
            bad = [object_ids[i] for i in np.flatnonzero(~finite)[:10]]
            raise CommandError(
                f"{int((~finite).sum())} vector(s) hold NaN, infinity or a number beyond float32 "
                f"(ids {', '.join(bad)}); nothing was imported."
            )
        if len(set(object_ids)) != len(object_ids):
            raise CommandError("The ids are not unique; each object may get one vector.")
        missing = self.missing_objects(registration, object_ids, using)
        if missing:
            raise CommandError(
                f"{len(missing):,} id(s) match no {registration.model._meta.label} "
                f"(e.g. {', '.join(missing[:10])}); nothing was imported."
            )

    def missing_objects(
        self, registration: Registration, object_ids: list[str], using: str
    ) -> list[str]:
        connection = connections[using]
        model = registration.model
        quote = connection.ops.quote_name
        pk_type = model._meta.pk.cast_db_type(connection) or "text"
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT x FROM unnest(%s::text[]) WITH ORDINALITY AS u(x, n) WHERE NOT EXISTS ("
                f"SELECT 1 FROM {quote(model._meta.db_table)} m "
                f"WHERE m.{quote(str(model._meta.pk.column))} = x::{pk_type}) ORDER BY n",
                [object_ids],
            )
            return [row[0] for row in cursor.fetchall()]

    # -- writing ----------------------------------------------------------------------------

    def copy_generic(
        self,
        registration: Registration,
        object_ids: list[str],
        vectors: np.ndarray[Any, Any],
        identity: str,
        replace: bool,
        using: str,
        progress: Progress,
    ) -> None:
        from ...models import Embedding

        connection = connections[using]
        content_type_id = registration.content_type_id(using)
        key = registration.key
        with connection.cursor() as cursor:
            if replace:
                cursor.execute(
                    f"DELETE FROM {connection.ops.quote_name(Embedding._meta.db_table)} "
                    "WHERE content_type_id = %s AND key = %s AND object_id = ANY(%s::text[])",
                    [content_type_id, key, object_ids],
                )
            now = datetime.now(UTC)
            vectors32 = vectors.astype(np.float32, copy=False)

            def rows() -> Any:
                for i, (object_id, vector) in enumerate(zip(object_ids, vectors32, strict=True)):
                    if i and i % PROGRESS_EVERY == 0:
                        progress.update(PROGRESS_EVERY)
                    yield (content_type_id, object_id, key, identity, "", vector, now)
                progress.update(len(object_ids) % PROGRESS_EVERY or PROGRESS_EVERY)

            copy_rows(
                connection,
                cursor,
                Embedding._meta.db_table,
                [
                    "content_type_id",
                    "object_id",
                    "key",
                    "identity",
                    "source_hash",
                    "vector",
                    "updated_at",
                ],
                ["int4", "text", "text", "text", "text", "vector", "timestamptz"],
                rows(),
            )

    def update_column(
        self,
        registration: Registration,
        object_ids: list[str],
        vectors: np.ndarray[Any, Any],
        identity: str,
        replace: bool,
        using: str,
    ) -> None:
        if not replace:
            name = registration.vector_field
            taken = (
                registration.model._base_manager.using(using)
                .filter(pk__in=object_ids, **{f"{name}__isnull": False})
                .count()
            )
            if taken:
                raise CommandError(
                    f"{taken:,} of these {registration.model._meta.label} objects have a vector in "
                    f"{name!r} already. Pass --replace to overwrite them; nothing was imported."
                )
        write_vectors(
            registration,
            [(object_id, "") for object_id in object_ids],
            vectors.astype(np.float32, copy=False),
            identity=identity,
            using=using,
        )

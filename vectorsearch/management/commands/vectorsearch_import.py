"""``manage.py vectorsearch_import app_label.Model FILE``: bulk-load vectors made elsewhere."""

from __future__ import annotations

import json
import struct
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, IntegrityError, connections, models, transaction
from psycopg.copy import QueuedLibpqWriter

from ...registry import Registration
from ...sync import write_vectors
from ..utils import Progress, select_registrations


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
        parser.add_argument(
            "file", type=Path, help="A .npy (2-D float array) or .jsonl (.ndjson) file."
        )
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
        object_ids = self.validate(registration, object_ids, vectors, database)
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
                # Memory-mapped: the file is read chunk by chunk while the COPY streams, rather
                # than all of it before the first row is sent.
                vectors = np.load(file, allow_pickle=False, mmap_mode="r")
            except (ValueError, OSError) as e:
                raise CommandError(f"{file} is not a readable .npy array: {e}") from e
            return self.load_ids(ids), vectors
        if suffix in (".jsonl", ".ndjson"):
            return self.load_jsonl(file)
        raise CommandError(
            f"Unknown file type {suffix!r}: give a .npy (with --ids) or .jsonl (.ndjson) file."
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
        numbers: list[int] = []
        with path.open() as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    object_ids.append(str(record["id"]))
                    rows.append(record["vector"])
                    numbers.append(number)
                except (ValueError, KeyError, TypeError) as e:
                    raise CommandError(
                        f'{path}, line {number}: expected {{"id": ..., "vector": [...]}} ({e}).'
                    ) from e
        try:
            vectors = np.asarray(rows, dtype=np.float32)
        except (ValueError, TypeError) as e:
            raise CommandError(_first_bad_vector(path, rows, numbers, object_ids)) from e
        return object_ids, vectors

    # -- checking ---------------------------------------------------------------------------

    def validate(
        self,
        registration: Registration,
        object_ids: list[str],
        vectors: np.ndarray[Any, Any],
        using: str,
    ) -> list[str]:
        """Check the file against the registration; return the ids in their canonical text."""
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
        if not registration.is_generic:
            # The generic path checks each chunk as it streams it (binary_copy_payload), while
            # the server is busy with the previous one.
            check_finite(vectors, object_ids)
        empty = [
            position for position, object_id in enumerate(object_ids, 1) if not object_id.strip()
        ]
        if empty:
            raise CommandError(
                f"{len(empty):,} id(s) are empty (vector {', '.join(map(str, empty[:10]))}, "
                "counting from 1); every vector needs its object's primary key."
            )
        object_ids = canonical_ids(registration.model, object_ids)
        if len(set(object_ids)) != len(object_ids):
            first: dict[str, int] = {}
            for position, object_id in enumerate(object_ids, 1):
                if object_id in first:
                    raise CommandError(
                        f"The ids are not unique: {object_id} is the id of vectors "
                        f"{first[object_id]} and {position} (counting from 1); each object may "
                        "get one vector."
                    )
                first[object_id] = position
        missing = self.missing_objects(registration, object_ids, using)
        if missing:
            raise CommandError(
                f"{len(missing):,} id(s) match no {registration.model._meta.label} "
                f"(e.g. {', '.join(missing[:10])}); nothing was imported."
            )
        return object_ids

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
            quote = connection.ops.quote_name
            columns = ", ".join(
                quote(c)
                for c in (
                    "content_type_id",
                    "object_id",
                    "key",
                    "identity",
                    "source_hash",
                    "vector",
                    "updated_at",
                )
            )
            sql = f"COPY {quote(Embedding._meta.db_table)} ({columns}) FROM STDIN (FORMAT BINARY)"
            payload = binary_copy_payload(
                content_type_id, key, identity, datetime.now(UTC), object_ids, vectors
            )
            # The raw cursor bypasses Django's error translation; this restores it.
            # A queued writer sends each chunk from a thread while the next one is built, so
            # this process and the server work at the same time.
            writer = QueuedLibpqWriter(cursor.cursor)
            with connection.wrap_database_errors, cursor.cursor.copy(sql, writer=writer) as copy:
                for rows, chunk in payload:
                    copy.write(chunk)
                    progress.update(rows)

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


def check_finite(vectors: np.ndarray[Any, Any], object_ids: list[str]) -> None:
    """CommandError naming the ids of vectors with NaN, infinity or a number beyond float32."""
    with np.errstate(over="ignore"):
        finite = np.isfinite(vectors.astype(np.float32, copy=False)).all(axis=1)
    if not finite.all():
        bad = [object_ids[i] for i in np.flatnonzero(~finite)[:10]]
        raise CommandError(
            f"{int((~finite).sum())} vector(s) hold NaN, infinity or a number beyond float32 "
            f"(ids {', '.join(bad)}); nothing was imported."
        )


# -- the COPY BINARY stream ---------------------------------------------------------------------

PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
CHUNK_ROWS = 5_000


def binary_copy_payload(
    content_type_id: int,
    key: str,
    identity: str,
    now: datetime,
    object_ids: list[str],
    vectors: np.ndarray[Any, Any],
) -> Any:
    """PostgreSQL's binary COPY format for Embedding rows, built by numpy, in chunks.

    Only the object id and the vector differ between rows, and rows whose ids have the same
    length have the same layout; so each such group is one numpy structured array whose bytes
    are the rows, with no Python work per row (``Copy.write_row()`` encodes every field of every
    row). Yields ``(rows, bytes)``. Layout: "Binary Format" under COPY in PostgreSQL's
    documentation, and pgvector's ``vector_recv`` (int16 dimensions, int16 unused, float4s).
    """
    dimensions = vectors.shape[1]
    key_b, identity_b = key.encode(), identity.encode()
    delta = now - PG_EPOCH
    microseconds = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    head = struct.pack(">hii", 7, 4, content_type_id)
    middle = (
        struct.pack(">i", len(key_b))
        + key_b
        + struct.pack(">i", len(identity_b))
        + identity_b
        + struct.pack(">i", 0)  # source_hash: '' (unknown source)
        + struct.pack(">iHH", 4 + 4 * dimensions, dimensions, 0)
    )
    tail = struct.pack(">iq", 8, microseconds)
    encoded = [object_id.encode() for object_id in object_ids]
    groups: dict[int, list[int]] = {}
    for position, object_id in enumerate(encoded):
        groups.setdefault(len(object_id), []).append(position)
    yield 0, b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
    for length, positions in groups.items():
        row = np.dtype(
            [
                ("head", f"V{len(head)}"),
                ("id_length", ">i4"),
                ("id", f"S{length}"),
                ("middle", f"V{len(middle)}"),
                ("vector", ">f4", (dimensions,)),
                ("tail", f"V{len(tail)}"),
            ]
        )
        for start in range(0, len(positions), CHUNK_ROWS):
            chunk = positions[start : start + CHUNK_ROWS]
            rows = np.empty(len(chunk), dtype=row)
            rows["head"] = np.void(head)
            rows["id_length"] = length
            rows["id"] = [encoded[i] for i in chunk]
            rows["middle"] = np.void(middle)
            first, last = chunk[0], chunk[-1]
            # Ids in file order are usually contiguous within a length group: a slice is a
            # view, where fancy indexing would copy every vector once more.
            contiguous = last - first == len(chunk) - 1
            block = vectors[first : last + 1] if contiguous else vectors[chunk]
            check_finite(block, [object_ids[i] for i in chunk])
            rows["vector"] = block
            rows["tail"] = np.void(tail)
            # A byte view, not tobytes(): psycopg sends any buffer, and this saves a copy.
            yield len(chunk), rows.view(np.uint8).data
    yield 0, struct.pack(">h", -1)


def canonical_ids(model: type[models.Model], object_ids: list[str]) -> list[str]:
    """Each id as the primary key field reads it back ("001" -> "1", an upper-case UUID ->
    lower case), so it names the same row the rest of the app names; CommandError otherwise."""
    pk = model._meta.pk
    assert pk is not None
    canonical = []
    for position, raw in enumerate(object_ids):
        try:
            value = pk.to_python(raw)
        except ValidationError:
            value = None
        if value is None or value == "":
            raise CommandError(
                f"Id {raw!r} (record {position + 1}) is not a valid primary key of "
                f"{model._meta.label} ({type(pk).__name__}); nothing was imported."
            )
        canonical.append(str(value))
    return canonical


def _first_bad_vector(path: Path, rows: list[Any], numbers: list[int], ids: list[str]) -> str:
    """Which line of a .jsonl file keeps its vectors from being one array, and why."""
    width = None
    for row, number, object_id in zip(rows, numbers, ids, strict=True):
        where = f"{path}, line {number} (id {object_id})"
        if not isinstance(row, list):
            return f"{where}: the vector must be a list of numbers, not {json.dumps(row)[:40]}."
        try:
            np.asarray(row, dtype=np.float32)
        except (ValueError, TypeError):
            return f"{where}: the vector holds something other than numbers."
        if width is None:
            width = len(row)
        elif len(row) != width:
            return f"{where}: the vector has {len(row)} numbers; line {numbers[0]} has {width}."
    return f"{path}: the vectors differ in length or hold non-numbers."

"""``manage.py vectorsearch_import app_label.Model FILE``: bulk-load vectors made elsewhere."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, DataError, IntegrityError, connections, models, transaction

from ...bulk import ImportConflict, import_vectors
from ...registry import Registration
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
        expected = expected_dimensions(registration)
        object_ids, vectors, lines = self.load(file, ids, registration, expected)
        object_ids = self.validate(registration, object_ids, vectors, lines, expected, database)
        identity = identity or registration.embedder.identity
        progress = Progress(
            self.stdout, len(object_ids), registration.label, enabled=verbosity >= 1
        )
        label = registration.model._meta.label
        try:
            with transaction.atomic(using=database):
                import_vectors(
                    registration,
                    object_ids,
                    vectors,
                    identity=identity,
                    replace=replace,
                    using=database,
                    progress=progress.update,
                )
        except ImportConflict as e:
            if e.missing_count:
                raise CommandError(
                    f"{e.missing_count:,} id(s) match no {label} (e.g. {', '.join(e.missing)}); "
                    "nothing was imported."
                ) from None
            raise CommandError(
                f"{e.taken:,} of these {label} objects have a vector in "
                f"{registration.vector_field!r} already. Pass --replace to overwrite them; "
                "nothing was imported."
            ) from None
        except IntegrityError as e:
            raise CommandError(
                f"{registration.label}: some of these objects have vectors already. Pass "
                "--replace to overwrite them; nothing was imported."
            ) from e
        except DataError as e:
            raise CommandError(
                f"{registration.label}: the database refused the vectors ({e}); nothing was "
                "imported."
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

    def load(
        self, file: Path, ids: Path | None, registration: Registration, expected: int | None
    ) -> tuple[list[str], np.ndarray[Any, Any], list[int] | None]:
        """The ids, the vectors and, for a .jsonl file, the line of each record."""
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
                # Memory-mapped: the file is read chunk by chunk, by the checks and then while
                # the COPY streams, rather than all of it into memory first.
                vectors = np.load(file, allow_pickle=False, mmap_mode="r")
            except (ValueError, OSError) as e:
                raise CommandError(f"{file} is not a readable .npy array: {e}") from e
            return self.load_ids(ids), vectors, None
        if suffix in (".jsonl", ".ndjson"):
            return load_jsonl(file, registration, expected)
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
            return list(map(str, array.tolist()))
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]

    # -- checking ---------------------------------------------------------------------------

    def validate(
        self,
        registration: Registration,
        object_ids: list[str],
        vectors: np.ndarray[Any, Any],
        lines: list[int] | None,
        expected: int | None,
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
        if expected is not None and vectors.shape[1] != expected:
            raise CommandError(
                f"{registration.label} takes vectors of {expected} dimensions; the file's have "
                f"{vectors.shape[1]}."
            )
        if not (
            np.issubdtype(vectors.dtype, np.floating) or np.issubdtype(vectors.dtype, np.integer)
        ):
            raise CommandError(f"The vectors must be numbers, not {vectors.dtype}.")
        check_finite(vectors, object_ids, lines)
        if not all(map(str.strip, object_ids)):
            empty = [
                position
                for position, object_id in enumerate(object_ids, 1)
                if not object_id.strip()
            ]
            raise CommandError(
                f"{len(empty):,} id(s) are empty (vector {', '.join(map(str, empty[:10]))}, "
                "counting from 1); every vector needs its object's primary key."
            )
        object_ids = canonical_ids(registration.model, object_ids, lines, using)
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
        if registration.is_generic:
            # Into a model's column, the UPDATE itself finds the ids that match no row.
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


def expected_dimensions(registration: Registration) -> int | None:
    """How many numbers each vector must have, when the registration says."""
    if registration.vector_field:
        dimensions = getattr(registration.model_field(), "dimensions", None)
        return int(dimensions) if dimensions is not None else None
    return registration.embedder.dimensions


def record(position: int, lines: list[int] | None) -> str:
    """Where the ``position``-th vector (from 0) is: "record 3", or "record 3, line 4"."""
    where = f"record {position + 1}"
    return f"{where}, line {lines[position]}" if lines is not None else where


CHECK_ROWS = 65_536  # rows per step of the finiteness check: bounded memory on any file


def check_finite(
    vectors: np.ndarray[Any, Any], object_ids: list[str], lines: list[int] | None = None
) -> None:
    """CommandError counting the vectors with NaN, infinity or a number beyond float32, and
    naming the first ones (id and record)."""
    count, first = 0, list[int]()
    with np.errstate(over="ignore", invalid="ignore"):
        for start in range(0, len(vectors), CHECK_ROWS):
            block = np.asarray(vectors[start : start + CHECK_ROWS]).astype(np.float32, copy=False)
            bad = np.flatnonzero(~np.isfinite(block).all(axis=1))
            count += len(bad)
            first.extend(int(i) + start for i in bad[: 10 - len(first)])
    if count:
        named = "; ".join(f"id {object_ids[i]} ({record(i, lines)})" for i in first)
        raise CommandError(
            f"{count:,} vector(s) hold NaN, infinity or a number beyond float32 (first: "
            f"{named}); nothing was imported."
        )


def canonical_ids(
    model: type[models.Model],
    object_ids: list[str],
    lines: list[int] | None = None,
    using: str = DEFAULT_DB_ALIAS,
) -> list[str]:
    """Each id as the primary key field reads it back ("001" -> "1", an upper-case UUID ->
    lower case), so it names the same row the rest of the app names; CommandError for an id
    that is no primary key, or out of the range of the primary key's integer column."""
    pk = model._meta.pk
    assert pk is not None
    bounds: tuple[int, int] | None
    try:
        bounds = connections[using].ops.integer_field_range(pk.get_internal_type())
    except KeyError:
        bounds = None
    if bounds is not None:
        # Whole numbers (the usual primary key): int() reads them as the field does, in a
        # fraction of the time; any surprise goes through the field below, which names it.
        try:
            numbers = list(map(int, object_ids))
        except ValueError:
            pass
        else:
            if bounds[0] <= min(numbers) and max(numbers) <= bounds[1]:
                return list(map(str, numbers))
    canonical = []
    for position, raw in enumerate(object_ids):
        try:
            value = pk.to_python(raw)
        except ValidationError:
            value = None
        if value is None or value == "":
            raise CommandError(
                f"Id {raw!r} ({record(position, lines)}) is not a valid primary key of "
                f"{model._meta.label} ({type(pk).__name__}); nothing was imported."
            )
        if bounds is not None and not bounds[0] <= value <= bounds[1]:
            raise CommandError(
                f"Id {raw!r} ({record(position, lines)}) is out of range for the primary key "
                f"of {model._meta.label} ({type(pk).__name__}: {bounds[0]} to {bounds[1]}); "
                "nothing was imported."
            )
        canonical.append(str(value))
    return canonical


NUMBERS = frozenset({int, float})  # JSON numbers; bool (true/false) is not one


def load_jsonl(
    path: Path, registration: Registration, expected: int | None
) -> tuple[list[str], np.ndarray[Any, Any], list[int]]:
    """A .jsonl file's ids, vectors and the line of each record; CommandError naming the first
    line (and id) that is no ``{"id": ..., "vector": [numbers]}`` of the right length."""
    object_ids: list[str] = []
    rows: list[list[float]] = []
    numbers: list[int] = []
    with path.open() as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record_ = json.loads(line)
                object_id, vector = str(record_["id"]), record_["vector"]
            except (ValueError, KeyError, TypeError) as e:
                raise CommandError(
                    f'{path}, line {number}: expected {{"id": ..., "vector": [...]}} ({e}).'
                ) from e
            if type(vector) is not list or not NUMBERS.issuperset(map(type, vector)):
                raise CommandError(
                    f"{path}, line {number} (id {object_id}): {_not_numbers(vector)}"
                )
            object_ids.append(object_id)
            rows.append(vector)
            numbers.append(number)
    _check_lengths(path, rows, numbers, object_ids, registration, expected)
    try:
        with np.errstate(over="ignore"):
            vectors = np.asarray(rows, dtype=np.float32)
    except (ValueError, TypeError, OverflowError) as e:  # e.g. an integer of 400 digits
        raise CommandError(f"{path}: the vectors hold numbers beyond float32 ({e}).") from e
    return object_ids, vectors.reshape(len(rows), -1), numbers


def _not_numbers(vector: Any) -> str:
    if type(vector) is not list:
        return f"the vector must be a list of numbers, not {json.dumps(vector)[:40]}."
    position, value = next((i, x) for i, x in enumerate(vector) if type(x) not in NUMBERS)
    return (
        f"the vector holds something other than numbers: {json.dumps(value)[:40]} "
        f"(number {position + 1}); write numbers unquoted, and no true/false/null."
    )


def _check_lengths(
    path: Path,
    rows: list[list[float]],
    numbers: list[int],
    ids: list[str],
    registration: Registration,
    expected: int | None,
) -> None:
    """The first line whose vector is not as long as the registration takes (or, when it does
    not say, as most lines' are), whichever line that is: the first one too."""
    if not rows:
        return
    widths = np.fromiter(map(len, rows), np.int64, count=len(rows))
    if expected is not None:
        wanted, why = expected, f"{registration.label} takes {expected}"
    else:
        values, counts = np.unique(widths, return_counts=True)
        wanted = int(values[np.argmax(counts)])
        why = f"most lines have {wanted}"
    bad = np.flatnonzero(widths != wanted)
    if len(bad):
        i = int(bad[0])
        raise CommandError(
            f"{path}, line {numbers[i]} (id {ids[i]}): the vector has {widths[i]} numbers; {why}."
        )

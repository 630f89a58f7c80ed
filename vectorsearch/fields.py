"""Vector model fields and form fields, drop-in compatible with ``pgvector.django``.

Each model field subclasses its ``pgvector.django`` namesake, so column types, stored values and
the Python values read back are the same. On top of it, values are checked in Python before the
database sees them -- wrong length, NaN, infinity, a number the column type cannot hold -- and a
bad value raises a :class:`~django.core.exceptions.ValidationError` that names the problem and
its position, from ``full_clean()``, from forms and from ``save()`` alike.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import orjson
from django import forms
from django.core import checks
from django.core.exceptions import ValidationError
from django.db.models import Model
from django.utils.functional import cached_property
from pgvector import Bit, HalfVector, SparseVector, Vector
from pgvector import django as pgvector_django

__all__ = [
    "BitField",
    "BitFormField",
    "HalfVectorField",
    "HalfVectorFormField",
    "SparseVectorField",
    "SparseVectorFormField",
    "VectorField",
    "VectorFormField",
]


# pgvector's limits on a column's declared size (pgvector 0.8).
MAX_DIMENSIONS = {
    "vector": 16_000,
    "halfvec": 16_000,
    "sparsevec": 1_000_000_000,
    "bit": 83_886_080,
}
# A sparsevec may store at most this many non-zero elements.
SPARSEVEC_MAX_NNZ = 16_000
SPARSEVEC_HNSW_MAX_NNZ = 1_000


def _invalid(message: str, code: str, **params: Any) -> ValidationError:
    return ValidationError(message, code=code, params=params)


def _dense_array(value: Any, vector_type: str) -> np.ndarray[Any, Any]:
    """``value`` (list, tuple, ndarray, pgvector type or "[1,2,3]" text) as a 1-D float64 array."""
    if isinstance(value, Vector | HalfVector):
        return value.to_numpy().astype(np.float64)
    if isinstance(value, str):
        value = _parse_text(value, vector_type)
    try:
        if np.iscomplexobj(value):
            raise TypeError("complex numbers")
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise _invalid(
            "Enter a %(type)s as a list of numbers, e.g. [0.1, 0.2, 0.3].",
            "invalid",
            type=vector_type,
        ) from None
    if array.ndim != 1:
        raise _invalid(
            "A %(type)s must be a flat list of numbers, not an array of shape %(shape)s.",
            "invalid_shape",
            type=vector_type,
            shape=array.shape,
        )
    return array


def _parse_text(text: str, vector_type: str) -> list[float]:
    """Parse ``[1, 2, 3]``, ``1, 2, 3`` or JSON into floats; ValidationError names the bad item."""
    body = text.strip()
    if body.startswith("[") and body.endswith("]"):
        body = body[1:-1]
    if not body.strip():
        return []
    numbers = []
    for position, item in enumerate(body.split(",")):
        try:
            numbers.append(float(item))
        except ValueError:
            raise _invalid(
                "Element %(position)s of the %(type)s is not a number: %(item)s.",
                "not_a_number",
                position=position,
                type=vector_type,
                item=json.dumps(item.strip()[:40]),
            ) from None
    return numbers


def _stored(array: np.ndarray[Any, Any], vector_type: str, dtype: Any) -> np.ndarray[Any, Any]:
    """``array`` as the column stores it (``dtype``: float32, float16); ValidationError at the
    first NaN, infinity or number the column cannot hold: one that rounds to infinity in it. (So
    the shortest text of the largest float32, 3.4028235e+38, a hair above it as a Python float,
    is accepted.)"""
    with np.errstate(over="ignore", invalid="ignore"):
        stored = array.astype(dtype)
    bad = ~np.isfinite(stored)  # NaN and infinity stay so in the cast
    if not bad.any():
        return stored
    limit = float(np.finfo(dtype).max)
    position = int(np.argmax(bad))
    number = float(array[position])
    if math.isnan(number):
        problem = "is NaN (not a number)"
    elif math.isinf(number):
        problem = "is infinite"
    else:
        problem = f"is {number:g}, outside the range a {vector_type} can store (±{limit:g})"
    raise _invalid(
        "Element %(position)s of the %(type)s %(problem)s.",
        "not_finite",
        position=position,
        type=vector_type,
        problem=problem,
    )


def _check_length(actual: int, expected: int | None, vector_type: str) -> None:
    limit = MAX_DIMENSIONS.get(vector_type.split()[0], MAX_DIMENSIONS["bit"])
    if expected is None and actual > limit:
        raise _invalid(
            "A %(type)s holds at most %(limit)s dimensions, got %(actual)s.",
            "too_many_dimensions",
            type=vector_type,
            limit=f"{limit:,}",
            actual=f"{actual:,}",
        )
    if expected is not None and actual != expected:
        raise _invalid(
            "Expected a %(type)s of %(expected)s dimensions, got %(actual)s.",
            "wrong_dimensions",
            type=vector_type,
            expected=expected,
            actual=actual,
        )
    if actual == 0:
        raise _invalid("A %(type)s needs at least one dimension.", "empty", type=vector_type)


def validate_dense(value: Any, *, vector_type: str, dimensions: int | None) -> list[float]:
    """Check a dense vector and return it as a list of floats.

    ``vector_type`` is "vector" (float32 range) or "halfvec" (float16 range).
    """
    values: list[float] = validate_dense_array(
        value, vector_type=vector_type, dimensions=dimensions
    ).tolist()
    return values


def dense_text(values: Any) -> str:
    """pgvector's text form of a dense vector, ``[0.1,-2.5,...]``: each number as the shortest
    text of its float32, which the server reads back as that same float32 (a halfvec column then
    rounds it to float16, as it would any text).

    orjson writes a 384-dimension vector in ~11 µs; formatting the floats in Python takes ~80 µs
    with ``%.9g`` and ~200 µs with ``str()``, on every search and every save.
    """
    array = np.ascontiguousarray(values, dtype=np.float32)
    return orjson.dumps(array, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def validate_dense_array(
    value: Any, *, vector_type: str, dimensions: int | None, stored: bool = False
) -> np.ndarray[Any, Any]:
    """:func:`validate_dense`, returning the float64 numpy array (no list built), or with
    ``stored`` the float32 (float16) array the column would hold."""
    array = _dense_array(value, vector_type)
    _check_length(array.shape[0], dimensions, vector_type)
    kept = _stored(array, vector_type, np.float16 if vector_type == "halfvec" else np.float32)
    return kept if stored else array


def validate_sparse(
    value: Any, *, dimensions: int | None, max_nonzeros: int = SPARSEVEC_MAX_NNZ
) -> SparseVector:
    """Check a sparse vector (SparseVector, dense list/array or ``{i:v,...}/n`` text)."""
    if isinstance(value, str):
        try:
            value = SparseVector.from_text(value.strip())
        except (ValueError, IndexError):
            raise _invalid(
                "Enter a sparsevec as {index:value,...}/dimensions, e.g. {1:0.5,3:2}/5, "
                "with 1-based indices.",
                "invalid",
            ) from None
    if not isinstance(value, SparseVector):
        value = SparseVector(_dense_array(value, "sparsevec"))
    _check_length(value.dimensions(), dimensions, "sparsevec")
    indices = value.indices()
    if len(indices) > max_nonzeros:
        where = "in an HNSW-indexed column " if max_nonzeros < SPARSEVEC_MAX_NNZ else ""
        raise _invalid(
            "A sparsevec %(where)smay have at most %(max)s non-zero elements, got %(nnz)s.",
            "too_many_nonzeros",
            where=where,
            max=f"{max_nonzeros:,}",
            nnz=f"{len(indices):,}",
        )
    if len(set(indices)) != len(indices):
        raise _invalid("A sparsevec index appears twice.", "duplicate_index")
    if any(i < 0 or i >= value.dimensions() for i in indices):
        raise _invalid(
            "A sparsevec index is outside its %(dimensions)s dimensions.",
            "index_out_of_range",
            dimensions=value.dimensions(),
        )
    _stored(np.asarray(value.values(), dtype=np.float64), "sparsevec", np.float32)
    checked: SparseVector = value
    return checked


def validate_bits(value: Any, *, length: int | None) -> str:
    """Check a bit string ("0101", list of bools, bool ndarray or Bit) and return it as text."""
    if isinstance(value, Bit):
        text = value.to_text()
    elif isinstance(value, str):
        text = value.strip()
        position = next((i for i, c in enumerate(text) if c not in "01"), None)
        if position is not None:
            raise _invalid(
                "Character %(position)s of the bit string is %(char)s; only 0 and 1 are allowed.",
                "invalid",
                position=position,
                char=json.dumps(text[position]),
            )
    elif isinstance(value, Sequence | np.ndarray) and not isinstance(value, bytes | bytearray):
        text = _bits_from_sequence(value)
    else:
        raise _invalid("Enter a bit string such as 0101, or a list of booleans.", "invalid")
    _check_length(len(text), length, "bit string")
    return text


def _bits_from_sequence(value: Sequence[Any] | np.ndarray[Any, Any]) -> str:
    """Booleans, or the integers 0 and 1, as a bit string; anything else is an error.

    ``bool("0")`` is True and ``bool(2)`` is True: coercing would store the wrong bits.
    """
    array = np.asarray(value)
    if array.ndim != 1:
        raise _invalid(
            "A bit string must be a flat list of booleans, not an array of shape %(shape)s.",
            "invalid_shape",
            shape=array.shape,
        )
    for position, bit in enumerate(array.tolist()):
        if not (isinstance(bit, bool) or (isinstance(bit, int) and bit in (0, 1))):
            raise _invalid(
                "Element %(position)s of the bit string is %(item)s; use True/False or 1/0.",
                "invalid",
                position=position,
                item=json.dumps(bit) if isinstance(bit, str) else repr(bit),
            )
    return "".join("1" if bit else "0" for bit in array.tolist())


class _EmptyValues(list[Any]):
    """Django's EMPTY_VALUES, safe to test a numpy array against.

    ``Model.clean_fields()`` asks ``value in field.empty_values``; with a plain list, comparing a
    numpy array to ``[]`` raises "the truth value of an array is ambiguous".
    """

    def __contains__(self, value: object) -> bool:
        if isinstance(value, np.ndarray):
            return False
        return super().__contains__(value)


# Only None and "" are blank: an empty list is not a missing vector but an invalid one, and must
# not slip past full_clean() (blank=True) to fail in save().
EMPTY_VALUES = _EmptyValues([None, ""])


class _ValidatedMixin:
    """What the four model fields share: validation in clean() and before every write."""

    vector_type: ClassVar[str]
    form_class: ClassVar[type[forms.Field]]
    empty_values: Sequence[Any] = EMPTY_VALUES

    def _validated(self, value: Any) -> Any:
        # vector and halfvec; sparsevec and bit override it.
        return validate_dense(
            value,
            vector_type=self.vector_type,
            dimensions=getattr(self, "dimensions", None),
        )

    def _size(self) -> int | None:
        size: int | None = getattr(self, "dimensions", None)
        return size

    def to_python(self, value: Any) -> Any:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        return self._validated(value)

    def validate(self, value: Any, model_instance: Model | None) -> None:
        super().validate(value, model_instance)  # type: ignore[misc]
        if value is not None:
            self._validated(value)

    def get_prep_value(self, value: Any) -> Any:
        # Nothing reaches the database unchecked: a NaN written by update() or bulk_create()
        # still gets a ValidationError here rather than a database error.
        if value is None or hasattr(value, "resolve_expression"):
            return super().get_prep_value(value)  # type: ignore[misc]
        return super().get_prep_value(self._validated(value))  # type: ignore[misc]

    def formfield(
        self, form_class: Any = None, choices_form_class: Any = None, **kwargs: Any
    ) -> forms.Field:
        kwargs.setdefault("dimensions", self._size())
        return super().formfield(  # type: ignore[misc, no-any-return]
            form_class=form_class or self.form_class,
            choices_form_class=choices_form_class,
            **kwargs,
        )

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        errors: list[checks.CheckMessage] = super().check(**kwargs)  # type: ignore[misc]
        size = self._size()
        limit = MAX_DIMENSIONS[self.vector_type]
        keyword = "length" if self.vector_type == "bit" else "dimensions"
        if size is not None and (isinstance(size, bool) or not isinstance(size, int)):
            errors.append(
                checks.Error(
                    f"{keyword} must be a whole number, not {size!r}.",
                    obj=self,
                    id="vectorsearch.E001",
                )
            )
        elif size is not None and not 1 <= size <= limit:
            errors.append(
                checks.Error(
                    f"A {self.vector_type} column holds 1 to {limit:,} dimensions, not {size:,}.",
                    obj=self,
                    id="vectorsearch.E001",
                )
            )
        if size is None and self.vector_type == "bit":
            errors.append(
                checks.Warning(
                    "A BitField without length is a bit(1) column in PostgreSQL: it holds a "
                    "single bit.",
                    hint="Declare the length, e.g. BitField(length=1024).",
                    obj=self,
                    id="vectorsearch.W002",
                )
            )
        return errors


@functools.cache
def _checked_fields(model: type[Model]) -> tuple[Any, ...]:
    """The model's vector fields that validate (looked up once per model, not per save)."""
    return tuple(f for f in model._meta.concrete_fields if isinstance(f, _ValidatedMixin))


def check_vectors_before_save(
    sender: type[Model],
    *,
    instance: Model,
    raw: bool = False,
    update_fields: frozenset[str] | None = None,
    **kwargs: Any,
) -> None:
    """``pre_save`` receiver: raise ValidationError for a bad vector before save() writes.

    Django sends ``pre_save`` before it opens the save's transaction, so the error leaves the
    caller's ``atomic()`` block usable; ``get_prep_value()`` checks again on the paths that send
    no signal (``update()``, ``bulk_create()``, lookups, fixtures loaded ``raw``).
    """
    if raw:
        return
    fields = _checked_fields(sender)
    if not fields:  # most saves on a site: models without vectors
        return
    errors: dict[str, list[ValidationError]] = {}
    for field in fields:
        if update_fields is not None and field.name not in update_fields:
            continue
        value = getattr(instance, field.attname)
        if value is None or hasattr(value, "resolve_expression"):
            continue
        try:
            field._validated(value)
        except ValidationError as e:
            errors[field.name] = e.error_list
    if errors:
        raise ValidationError(errors)


class _DenseMixin:
    """vector and halfvec: written as :func:`dense_text`, read back as the exact float32 (float16)
    numbers the column stores.

    Whatever the path -- text, binary, ``raw()``, pgvector's own psycopg loaders -- a stored
    ``0.1`` reads back as ``0.10000000149011612``, the float32 it is, as ``pgvector.psycopg``'s
    binary loader gives it; the same row never reads back as two different lists.

    The queries the search layer runs for model instances select the column as
    ``vectorsearch.ranking.expressions.BinaryVector``: a 384-dimension vector is ~4 KB of decimal text that the
    server formats and Python parses float by float -- for the ten rows of a search about 0.8 ms,
    a third of the query -- while ``vector_send(column)`` sends the bytes, decoded in one numpy
    call. Only there: elsewhere a selected column may be ordered, grouped, compared (DISTINCT,
    UNION) or read by an outer query as a vector, which its bytes are not.
    """

    vector_type: ClassVar[str]
    _send_function: ClassVar[str]
    _dtype: ClassVar[type[np.floating[Any]]]

    def get_prep_value(self, value: Any) -> Any:
        if value is None or hasattr(value, "resolve_expression"):
            return super().get_prep_value(value)  # type: ignore[misc]
        return dense_text(
            validate_dense_array(
                value,
                vector_type=self.vector_type,
                dimensions=getattr(self, "dimensions", None),
                stored=True,
            )
        )

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, bytes | memoryview):
            return decode_dense(value, self._dtype)
        if isinstance(value, str):
            # pgvector's text form, "[0.1,-0,1e-07]", parsed by numpy in one call: ~46 µs for
            # 384 numbers where pgvector's float() per item takes ~120, on every row read
            # outside a search (the admin, get(), values(), dumpdata). (orjson would be faster
            # still, but reads "-0" as the integer 0.)
            numbers: Any = np.fromstring(value[1:-1], dtype=np.float64, sep=",")
        else:  # a Vector or array, where pgvector's psycopg loaders are registered
            numbers = super().from_db_value(value, expression, connection)  # type: ignore[misc]
        values: list[float] = np.asarray(numbers, dtype=self._dtype).tolist()
        return values

    def value_to_string(self, obj: Model) -> str:
        # dumpdata: each number as the shortest text of the float32 (float16) it is, so a
        # fixture says 0.1, not 0.10000000149011612, and loads back the same vector.
        value = self.value_from_object(obj)  # type: ignore[attr-defined]
        if value is None:
            return ""
        numbers = self._validated(value)  # type: ignore[attr-defined]
        return "[" + ",".join(shortest_texts(numbers, self._dtype)) + "]"


def shortest_texts(values: Any, dtype: Any) -> list[str]:
    """Each number as the shortest text that reads back as the same ``dtype`` (float32,
    float16) value: 0.10000000149011612 as "0.1", the float32 it is; 1.0 as "1"."""
    texts = []
    for x in np.asarray(values, dtype=dtype):
        number = float(x)
        texts.append(str(int(number)) if number.is_integer() and abs(number) < 1e16 else str(x))
    return texts


@functools.cache
def _big_endian(dtype: Any) -> np.dtype[Any]:
    swapped: np.dtype[Any] = np.dtype(dtype).newbyteorder(">")
    return swapped


def decode_dense(data: bytes | memoryview, dtype: Any) -> list[float]:
    """A list of floats from pgvector's binary ``vector`` (``dtype`` float32) or ``halfvec``
    (float16) form: big-endian numbers after a 4-byte header."""
    array = np.frombuffer(data, dtype=_big_endian(dtype), offset=4)
    dimensions = int.from_bytes(data[:2], "big")
    if array.shape[0] != dimensions:
        raise ValueError(f"Truncated binary vector: {array.shape[0]} of {dimensions} dimensions.")
    values: list[float] = array.tolist()
    return values


class VectorField(_DenseMixin, _ValidatedMixin, pgvector_django.VectorField):
    """A pgvector ``vector(dimensions)`` column of float32 numbers.

    Accepts lists, tuples, numpy arrays and :class:`pgvector.Vector`; reads back a list of floats,
    as ``pgvector.django.VectorField`` does.
    """

    vector_type = "vector"
    _send_function = "vector_send"
    _dtype = np.float32


class HalfVectorField(_DenseMixin, _ValidatedMixin, pgvector_django.HalfVectorField):
    """A pgvector ``halfvec(dimensions)`` column of float16 numbers (±65,504)."""

    vector_type = "halfvec"
    _send_function = "halfvec_send"
    _dtype = np.float16


class SparseVectorField(_ValidatedMixin, pgvector_django.SparseVectorField):
    """A pgvector ``sparsevec(dimensions)`` column; values are :class:`pgvector.SparseVector`."""

    vector_type = "sparsevec"

    def _validated(self, value: Any) -> SparseVector:
        return validate_sparse(value, dimensions=self.dimensions, max_nonzeros=self._max_nonzeros)

    @cached_property
    def _max_nonzeros(self) -> int:
        # An HNSW index on a sparsevec column takes at most 1,000 non-zero elements per row.
        model = getattr(self, "model", None)
        for index in model._meta.indexes if model is not None else ():
            if isinstance(index, pgvector_django.HnswIndex) and self.name in [
                name.lstrip("-") for name in index.fields
            ]:
                return SPARSEVEC_HNSW_MAX_NNZ
        return SPARSEVEC_MAX_NNZ


class BitField(_ValidatedMixin, pgvector_django.BitField):
    """A ``bit(length)`` column for binary vectors; values are strings of 0 and 1."""

    vector_type = "bit"

    def _size(self) -> int | None:
        return self.length

    def _validated(self, value: Any) -> str:
        return validate_bits(value, length=self.length)


# Form fields ------------------------------------------------------------------------------------


class VectorWidget(forms.TextInput):
    """A text input showing the vector as ``[0.1, 0.2, ...]``."""

    #: The numbers the column stores: each is shown as the shortest text that reads back as the
    #: same float32 (float16), so a value stored as 0.10000000149011612 shows as 0.1.
    dtype: Any = np.float32

    def format_value(self, value: Any) -> str | None:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, SparseVector):
            return str(value.to_text())
        if isinstance(value, Vector | HalfVector):
            value = value.to_list()
        # A form posted back unchanged stores exactly what was there. Whole numbers keep their
        # ".0", as pgvector.django's widget shows them ([1.0, 2.0, 3.0]).
        texts = (t if "." in t or "e" in t else f"{t}.0" for t in shortest_texts(value, self.dtype))
        return "[" + ", ".join(texts) + "]"


class _VectorFormFieldMixin:
    vector_type: ClassVar[str]
    empty_values: Sequence[Any] = EMPTY_VALUES

    def __init__(self, *, dimensions: int | None = None, **kwargs: Any) -> None:
        self.dimensions = dimensions
        kwargs.setdefault("widget", VectorWidget)
        kwargs.pop("max_length", None)
        super().__init__(**kwargs)
        widget = self.widget  # type: ignore[attr-defined]
        if isinstance(widget, VectorWidget) and self.vector_type == "halfvec":
            widget.dtype = np.float16

    def to_python(self, value: Any) -> Any:
        if value in self.empty_values or (isinstance(value, str) and not value.strip()):
            return None
        return self._validated(value)

    def _validated(self, value: Any) -> Any:
        return validate_dense(value, vector_type=self.vector_type, dimensions=self.dimensions)

    def has_changed(self, initial: Any, data: Any) -> bool:
        # Compare values, not texts ("[1, 2]" and "[1.0, 2.0]" are the same vector), and never
        # with ``!=`` on a numpy array, whose result has no single truth value.
        try:
            before = None if initial in self.empty_values else self._comparable(initial)
            after = None if data in self.empty_values else self._comparable(data)
        except ValidationError:
            return True
        return before != after

    def _comparable(self, value: Any) -> Any:
        cleaned = self._validated(value)
        if isinstance(cleaned, list):
            # What the column stores: float32 (or float16) numbers.
            dtype = np.float16 if self.vector_type == "halfvec" else np.float32
            return np.asarray(cleaned, dtype=dtype).tobytes()
        if isinstance(cleaned, SparseVector):
            return cleaned.to_text()
        return cleaned


class VectorFormField(_VectorFormFieldMixin, forms.CharField):
    """Parses ``[0.1, 0.2, 0.3]`` (or ``0.1, 0.2, 0.3``) and validates like :class:`VectorField`."""

    vector_type = "vector"


class HalfVectorFormField(_VectorFormFieldMixin, forms.CharField):
    vector_type = "halfvec"


class SparseVectorFormField(_VectorFormFieldMixin, forms.CharField):
    """Parses ``{1:0.5,3:2}/5`` (1-based indices, as pgvector writes them)."""

    vector_type = "sparsevec"

    def _validated(self, value: Any) -> SparseVector:
        return validate_sparse(value, dimensions=self.dimensions)


class BitFormField(_VectorFormFieldMixin, forms.CharField):
    """Parses a string of 0 and 1."""

    vector_type = "bit"

    def _validated(self, value: Any) -> str:
        return validate_bits(value, length=self.dimensions)


VectorField.form_class = VectorFormField
HalfVectorField.form_class = HalfVectorFormField
SparseVectorField.form_class = SparseVectorFormField
BitField.form_class = BitFormField

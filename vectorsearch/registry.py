"""Which models are searchable, from which text, into which vector.

Call :func:`register` from an ``AppConfig.ready()``::

    import vectorsearch

    class ShopConfig(AppConfig):
        def ready(self):
            vectorsearch.register(Product, fields=["name", "description"], vector_field="embedding")
            vectorsearch.register(FlatPage, fields=["title", "content"])  # generic Embedding table

With ``vector_field`` the vector lives in that column of the model; without it, in the generic
:class:`vectorsearch.models.Embedding` table, for models whose tables can't change. Saves and
deletes of a registered model keep its vectors in step through the receivers of
:mod:`vectorsearch.signals`; this module only records what is registered and sends
:data:`registration_changed`, so it imports nothing that acts on registrations.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.db import models
from django.db.models import OuterRef
from django.db.models.functions import Cast
from django.dispatch import Signal

from .conf import SYNC_MODES
from .distances import Distance, vector_type_of
from .embedders import embedders
from .embedders.base import BaseEmbedder
from .exceptions import NotRegistered
from .fields import HalfVectorField, VectorField
from .indexes import served_distances

__all__ = [
    "Registration",
    "Registry",
    "register",
    "registration_changed",
    "registry",
    "unregister",
]

#: Sent by :meth:`Registry.register` and :meth:`Registry.unregister`, with the registry as sender
#: and ``model=`` the model whose registrations changed. :mod:`vectorsearch.signals` listens to
#: the site's registry to connect or disconnect that model's save and delete receivers.
registration_changed = Signal()
# pgvector's HNSW limit on a vector column; beyond it the generic table is indexed as halfvec.
HNSW_MAX_VECTOR_DIMENSIONS = 2_000

TextSource = Sequence[str] | Callable[[Any], str]


@dataclass(eq=False)
class Registration:
    """One ``register()`` call: a model, its source text, where its vector goes, which embedder."""

    model: type[models.Model]
    fields: tuple[str, ...] = ()
    text: Callable[[Any], str] | None = None
    vector_field: str | None = None
    embedder_alias: str = "default"
    filters: tuple[str, ...] = ()
    distance: Distance = Distance.COSINE
    sync: str | None = None
    #: False: saves and deletes leave this registration's vectors alone (the receivers of
    #: :mod:`vectorsearch.signals` skip it); only the backfill and the admin action write them.
    connect_signals: bool = True

    @property
    def key(self) -> str:
        """What tells this registration's rows apart in the Embedding table."""
        return self.vector_field or f"@{self.embedder_alias}"

    @property
    def label(self) -> str:
        """``app_label.Model`` plus ``.field`` or ``@alias``, as commands print it."""
        suffix = f".{self.vector_field}" if self.vector_field else f"@{self.embedder_alias}"
        return f"{self.model._meta.label}{suffix}"

    @property
    def is_generic(self) -> bool:
        return self.vector_field is None

    @property
    def embedder(self) -> BaseEmbedder:
        return embedders[self.embedder_alias]

    def get_text(self, obj: Any) -> str:
        """The text the vector is made from: the fields joined by blank lines, or the callable's."""
        if self.text is not None:
            return str(self.text(obj) or "")
        parts = (getattr(obj, name) for name in self.fields)
        return "\n\n".join(str(part) for part in parts if part not in (None, ""))

    @staticmethod
    def hash_text(text: str) -> str:
        """The source hash stored with a vector: SHA-256 of the text, hex."""
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()

    def loaded_fields(self) -> list[str] | None:
        """Fields to ``only()`` when reading text, or None (a callable may read any of them)."""
        if self.text is not None:
            return None
        return [self.model._meta.pk.attname, *self.fields]

    def content_type_id(self, using: str = "default") -> int:
        """The model's ContentType id in database ``using``.

        Through ContentType's own cache, which Django clears when content types are recreated
        (a test database flush); a cache of our own would keep a dead id.
        """
        from django.contrib.contenttypes.models import ContentType

        manager = ContentType.objects.db_manager(using)
        return int(manager.get_for_model(self.model, for_concrete_model=False).pk)

    # -- the vector, as queries and indexes see it ---------------------------------------------

    def model_field(self) -> models.Field[Any, Any]:
        assert self.vector_field is not None
        return self.model._meta.get_field(self.vector_field)  # type: ignore[return-value]

    def cast_field(self) -> models.Field[Any, Any]:
        """The sized type the generic column is cast to, so that an HNSW index can cover it."""
        dimensions = self.embedder.dimensions
        if dimensions > HNSW_MAX_VECTOR_DIMENSIONS:
            return HalfVectorField(dimensions=dimensions)
        return VectorField(dimensions=dimensions)

    def vector_expression(self) -> Any:
        """The expression to rank on: the model's column, or ``vector::vector(N)`` in Embedding."""
        if self.vector_field is not None:
            return models.F(self.vector_field)
        return Cast("vector", output_field=self.cast_field())

    def embedding_rows(self, using: str, *, current: bool = False) -> models.QuerySet[Any]:
        """This registration's rows of the ``Embedding`` table (vectors or bookkeeping);
        ``current``: only those its embedder made, the ones a search may compare."""
        from .models import Embedding

        rows = Embedding.objects.using(using).filter(
            content_type_id=self.content_type_id(using), key=self.key
        )
        return rows.filter(identity=self.embedder.identity) if current else rows

    def foreign_vectors(self, using: str) -> models.QuerySet[Any]:
        """Bookkeeping rows saying the vector of the outer row was made by another embedder
        (for ``~Exists(...)`` on the model's own column)."""
        return (
            self.embedding_rows(using)
            .filter(object_id=Cast(OuterRef("pk"), output_field=models.TextField()))
            .exclude(identity=self.embedder.identity)
        )

    def vector_type(self) -> str:
        field = self.model_field() if self.vector_field else self.cast_field()
        return vector_type_of(field) or "vector"

    def query_distance(self) -> Distance:
        """The distance searches use: the one the vector field's index serves, else the
        registration's ``distance``."""
        if self.vector_field is not None:
            field = self.model_field()
            indexed = served_distances(field.model, field.name)
            if len(indexed) == 1:
                return next(iter(indexed))
        return self.distance


class Registry:
    """The registrations, by model. One module-level instance, :data:`registry`, is the site's."""

    def __init__(self) -> None:
        self._registrations: dict[type[models.Model], list[Registration]] = {}

    def register(
        self,
        model: type[models.Model] | str,
        *,
        fields: TextSource,
        vector_field: str | None = None,
        embedder: str = "default",
        filters: Sequence[str] = (),
        distance: Distance | str = Distance.COSINE,
        sync: str | None = None,
        connect_signals: bool = True,
    ) -> Registration:
        """Declare that ``model``'s text (``fields`` or a callable) feeds a vector.

        Arguments are checked here when they are wrong whatever the model (types, modes); the
        model's fields are checked by the system checks (``vectorsearch.E020``...), which can say
        which field is wrong at start-up. With ``connect_signals=False`` saves and deletes leave
        this registration's vectors alone: only the backfill (and the admin action) write them.
        May be called at any time, also after start-up.
        """
        if isinstance(model, str):
            model = apps.get_model(model)
        if not (isinstance(model, type) and issubclass(model, models.Model)):
            raise TypeError(f"register() takes a model class or 'app_label.Model', not {model!r}.")
        if model._meta.proxy:
            # A proxy's rows are its concrete model's: vectors kept under the proxy would miss
            # the saves and deletes made through the concrete model (and its other proxies).
            concrete = model._meta.concrete_model
            raise TypeError(
                f"{model._meta.label} is a proxy model; register its concrete model "
                f"{concrete._meta.label if concrete else '?'} instead (the search covers the "
                "proxy's rows too: vectorsearch.search(Proxy.objects.all(), ...))."
            )
        text: Callable[[Any], str] | None = None
        names: tuple[str, ...] = ()
        if callable(fields):
            text = fields
        elif isinstance(fields, str) or not all(isinstance(f, str) for f in fields) or not fields:
            raise TypeError(
                "register(fields=...) takes a non-empty list of field names, e.g. ['title', "
                f"'body'], or a callable obj -> str; got {fields!r}."
            )
        else:
            names = tuple(fields)
        if sync is not None and sync not in SYNC_MODES:
            raise ValueError(
                f"register(sync=...) must be one of {', '.join(SYNC_MODES)}, not {sync!r}."
            )
        registration = Registration(
            model=model,
            fields=names,
            text=text,
            vector_field=vector_field,
            embedder_alias=embedder,
            filters=tuple(filters),
            distance=Distance.parse(distance),
            sync=sync,
            connect_signals=connect_signals,
        )
        existing = self._registrations.setdefault(model, [])
        if any(r.key == registration.key for r in existing):
            raise ValueError(
                f"{registration.label} is registered already; call unregister() first to change it."
            )
        existing.append(registration)
        registration_changed.send(sender=self, model=model)
        return registration

    def unregister(self, model: type[models.Model], key: str | None = None) -> None:
        """Forget ``model``'s registration ``key`` (all of them when None)."""
        kept = [r for r in self._registrations.get(model, []) if key is not None and r.key != key]
        if kept:
            self._registrations[model] = kept
        else:
            self._registrations.pop(model, None)
        registration_changed.send(sender=self, model=model)

    def __iter__(self) -> Iterator[Registration]:
        for registrations in self._registrations.values():
            yield from registrations

    def __contains__(self, model: object) -> bool:
        return model in self._registrations

    def for_model(self, model: type[models.Model]) -> list[Registration]:
        return list(self._registrations.get(model, []))

    def get(
        self,
        model: type[models.Model],
        *,
        vector_field: str | None = None,
        embedder: str | None = None,
    ) -> Registration:
        """The model's registration; ``vector_field``/``embedder`` choose when there are several."""
        candidates = [
            r
            for r in self._registrations.get(model, [])
            if (vector_field is None or r.vector_field == vector_field)
            and (embedder is None or r.embedder_alias == embedder)
        ]
        if len(candidates) == 1:
            return candidates[0]
        if not candidates:
            raise NotRegistered(
                f"{model._meta.label} is not registered with vectorsearch"
                f"{' for vector field ' + repr(vector_field) if vector_field else ''}"
                f"{' with embedder ' + repr(embedder) if embedder else ''}; "
                f"registered: {', '.join(self.labels()) or 'none'}."
            )
        raise NotRegistered(
            f"{model._meta.label} has {len(candidates)} registrations "
            f"({', '.join(r.label for r in candidates)}); pass vector_field= or embedder=."
        )

    def labels(self) -> list[str]:
        return sorted(r.label for r in self)

    def select(self, labels: Sequence[str]) -> list[Registration]:
        """Registrations named ``app_label.Model`` (all of the model's) or by their full label.

        Raises :class:`NotRegistered` naming the unknown label and listing the known ones.
        """
        if not labels:
            return list(self)
        chosen: list[Registration] = []
        for label in labels:
            found = [
                r for r in self if label.lower() in (r.label.lower(), r.model._meta.label_lower)
            ]
            if not found:
                known = ", ".join(self.labels()) or (
                    "none (call vectorsearch.register() in an AppConfig.ready())"
                )
                raise NotRegistered(f"No registered model called {label!r}; registered: {known}.")
            chosen.extend(r for r in found if r not in chosen)
        return chosen


registry = Registry()


def register(model: type[models.Model] | str, **kwargs: Any) -> Registration:
    """Register ``model`` with the site's registry; see :meth:`Registry.register`."""
    return registry.register(model, **kwargs)


def unregister(model: type[models.Model], key: str | None = None) -> None:
    registry.unregister(model, key)

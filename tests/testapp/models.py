from django.db import models
from pgvector import django as pgvector_django

from vectorsearch import (
    BitField,
    HalfVectorField,
    HnswIndex,
    IvfflatIndex,
    SparseVectorField,
    VectorField,
    VectorQuerySet,
)


class Document(models.Model):
    """pgvector's README walkthrough, in Django."""

    content = models.TextField()
    embedding = VectorField(dimensions=3)

    objects = VectorQuerySet.as_manager()

    class Meta:
        indexes = [
            HnswIndex(
                fields=["embedding"],
                distance="cosine",
                m=16,
                ef_construction=64,
                name="document_embedding_hnsw",
            )
        ]

    def __str__(self) -> str:
        return self.content


class Item(models.Model):
    """One column of each pgvector type, each indexed for a different distance."""

    name = models.CharField(max_length=50, blank=True)
    embedding = VectorField(dimensions=3, null=True, blank=True)
    half_embedding = HalfVectorField(dimensions=3, null=True, blank=True)
    sparse_embedding = SparseVectorField(dimensions=3, null=True, blank=True)
    binary_embedding = BitField(length=3, null=True, blank=True)

    objects = VectorQuerySet.as_manager()

    class Meta:
        indexes = [
            HnswIndex(fields=["embedding"], distance="l2", name="item_embedding_l2"),
            IvfflatIndex(
                fields=["half_embedding"], distance="inner_product", lists=1, name="item_half_ip"
            ),
            HnswIndex(fields=["sparse_embedding"], distance="l1", name="item_sparse_l1"),
            HnswIndex(fields=["binary_embedding"], distance="jaccard", name="item_bits_jaccard"),
        ]


class LegacyItem(models.Model):
    """Declared with pgvector.django, as a site has it before it adopts vectorsearch."""

    embedding = pgvector_django.VectorField(dimensions=3, null=True)

    objects = VectorQuerySet.as_manager()

    class Meta:
        indexes = [
            pgvector_django.HnswIndex(
                fields=["embedding"], name="legacy_embedding_hnsw", opclasses=["vector_ip_ops"]
            )
        ]

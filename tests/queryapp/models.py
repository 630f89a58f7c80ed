"""Models for the query tests and the benchmarks: relations, text and a 384-d table."""

from django.contrib.postgres.search import SearchVectorField
from django.db import models

from vectorsearch import HnswIndex, VectorField, VectorManager


class Category(models.Model):
    name = models.CharField(max_length=50)

    def __str__(self) -> str:
        return self.name


class Tag(models.Model):
    name = models.CharField(max_length=50)

    def __str__(self) -> str:
        return self.name


class Article(models.Model):
    """A small searchable table with a foreign key, a many-to-many and text."""

    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    category = models.ForeignKey(Category, on_delete=models.CASCADE, related_name="articles")
    tags = models.ManyToManyField(Tag, blank=True, related_name="articles")
    price = models.IntegerField(default=0)
    search = SearchVectorField(null=True, blank=True)
    embedding = VectorField(dimensions=4, null=True, blank=True)

    objects = VectorManager()

    class Meta:
        indexes = [
            HnswIndex(fields=["embedding"], distance="cosine", name="article_embedding_hnsw")
        ]

    def __str__(self) -> str:
        return self.title


class BenchItem(models.Model):
    """The benchmark table: 384-d normalized vectors, a category independent of the clusters."""

    category = models.IntegerField(db_index=True)
    embedding = VectorField(dimensions=384)

    objects = VectorManager()

    class Meta:
        indexes = [
            HnswIndex(
                fields=["embedding"],
                distance="cosine",
                m=16,
                ef_construction=64,
                name="benchitem_embedding_hnsw",
            )
        ]

    def __str__(self) -> str:
        return f"BenchItem {self.pk} (category {self.category})"


class HalfItem(models.Model):
    """A float32 column indexed as halfvec (HnswIndex(quantization="halfvec"))."""

    group = models.IntegerField(default=0)
    embedding = VectorField(dimensions=16)

    objects = VectorManager()

    class Meta:
        indexes = [
            HnswIndex(
                fields=["embedding"], distance="cosine", quantization="halfvec", name="half_hnsw"
            )
        ]


class BinaryItem(models.Model):
    """A float32 column indexed by binary quantization, re-ranked by the full distance."""

    group = models.IntegerField(default=0)
    embedding = VectorField(dimensions=64)

    objects = VectorManager()

    class Meta:
        indexes = [
            HnswIndex(
                fields=["embedding"], distance="cosine", quantization="binary", name="binary_hnsw"
            )
        ]


class WideItem(models.Model):
    """3,072 dimensions: more than an HNSW index on a vector takes, indexed as halfvec."""

    embedding = VectorField(dimensions=3072)

    objects = VectorManager()

    class Meta:
        indexes = [
            HnswIndex(
                fields=["embedding"], distance="cosine", quantization="halfvec", name="wide_hnsw"
            )
        ]

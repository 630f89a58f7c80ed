from django.db import models

from vectorsearch import HnswIndex, VectorField, VectorQuerySet


class Article(models.Model):
    """A small catalogue; each vector says how much an article is about animals, vehicles, food."""

    title = models.CharField(max_length=200)
    topic = models.CharField(max_length=50)
    embedding = VectorField(dimensions=3)

    objects = VectorQuerySet.as_manager()

    class Meta:
        ordering = ["title"]
        indexes = [
            HnswIndex(
                fields=["embedding"],
                distance="cosine",
                m=16,
                ef_construction=64,
                name="article_embedding_hnsw",
            )
        ]

    def __str__(self) -> str:
        return self.title

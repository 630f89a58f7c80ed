"""Models for the embeddings tests: one with its own vector column, two using the generic table."""

from django.db import models

from vectorsearch import HnswIndex, VectorField, VectorQuerySet

DIMENSIONS = 256


class Article(models.Model):
    """Vectors in its own column (register(..., vector_field="embedding"))."""

    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    embedding = VectorField(dimensions=DIMENSIONS, null=True, blank=True)

    objects = VectorQuerySet.as_manager()

    class Meta:
        indexes = [HnswIndex(fields=["embedding"], distance="cosine", name="embedapp_article_hnsw")]

    def __str__(self) -> str:
        return self.title


class Note(models.Model):
    """A model whose table "can't change": vectors in vectorsearch's Embedding table."""

    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    category = models.CharField(max_length=20, default="general")

    def __str__(self) -> str:
        return self.title


class Tag(models.Model):
    """A text primary key and a callable source text, through the generic table."""

    slug = models.SlugField(primary_key=True)
    label = models.CharField(max_length=100)

    def __str__(self) -> str:
        return self.slug


class Post(models.Model):
    """A registered parent (generic table) with a multi-table child and a proxy."""

    title = models.CharField(max_length=200)

    def __str__(self) -> str:
        return self.title


class LongPost(Post):
    summary = models.TextField(blank=True)


class PinnedPost(Post):
    class Meta:
        proxy = True

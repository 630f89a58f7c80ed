from django.db import models

from vectorsearch import VectorField

GLOVE_DIMENSIONS = 50


class Word(models.Model):
    """One GloVe word; its 50-d vector in its own column (no HNSW index: a bulk load comes
    first, the index after it)."""

    word = models.CharField(max_length=100)
    embedding = VectorField(dimensions=GLOVE_DIMENSIONS, null=True, blank=True)

    def __str__(self) -> str:
        return self.word

from django.db import models
from django.urls import reverse

from .corpus import KINDS


class Passage(models.Model):
    """A paragraph of Python's documentation: the content the site had before vectorsearch.

    The table has no vector column: like a third-party model an existing site can't change, it
    is registered into vectorsearch's generic Embedding table (see apps.py).
    """

    title = models.CharField(max_length=300, help_text="The documented object, e.g. json.dumps.")
    module = models.CharField(max_length=100, db_index=True)
    kind = models.CharField(max_length=20, choices=[(k, k) for k in KINDS], db_index=True)
    section = models.PositiveIntegerField(default=1, help_text="The paragraph's place, from 1.")
    heading = models.CharField(max_length=200, blank=True)
    body = models.TextField()

    class Meta:
        ordering = ["title", "section"]

    def __str__(self) -> str:
        name = f"{self.title} \u2014 {self.heading}" if self.heading else self.title
        return f"{name} (part {self.section})" if self.section > 1 else name

    def get_absolute_url(self) -> str:
        return reverse("passage", args=[self.pk])

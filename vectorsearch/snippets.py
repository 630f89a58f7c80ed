"""What the search page and JSON API show of a search: a page of :class:`SearchResult` (their
snippets, windows of the documents' text around the query marked up safely by :func:`highlight`),
and :class:`Facet` counts. Importable from :mod:`vectorsearch.views` as well.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.core.paginator import EmptyPage, Page, Paginator
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

__all__ = [
    "Facet",
    "FacetValue",
    "SearchPaginator",
    "SearchResult",
    "finite",
    "highlight",
    "page_context",
    "snippet",
]

# A word of the query, for highlighting: letters and digits, at least two of them.
_WORD = re.compile(r"\w{2,}")


@dataclass(frozen=True)
class SearchResult:
    """One hit: what the page and the API show of it. ``snippet`` is escaped HTML with ``<mark>``."""

    model: str
    pk: Any
    title: str
    url: str | None
    score: float | None
    snippet: SafeString
    object: Any = field(repr=False, compare=False)

    def as_json(self) -> dict[str, Any]:
        """The result in the JSON API: ``title`` plain text, ``snippet`` escaped HTML."""
        return {
            "model": self.model,
            "pk": self.pk if isinstance(self.pk, int | str) else str(self.pk),
            "title": self.title,
            "url": self.url,
            "score": self.score,
            "snippet": str(self.snippet),
        }


@dataclass(frozen=True)
class FacetValue:
    """A value of a filter among the results, how many results have it, and the URL toggling it."""

    value: str
    count: int
    selected: bool
    url: str


@dataclass(frozen=True)
class Facet:
    """A whitelisted filter with the values found among the nearest results."""

    name: str
    label: str
    values: list[FacetValue]

    @classmethod
    def count(
        cls,
        name: str,
        label: str,
        found: Iterable[Any],
        selected: Collection[str],
        url: Callable[[str], str],
        shown: int = 12,
    ) -> Facet:
        """The facet of ``found``, the filter's values among the nearest results: the ``shown``
        (12) most common values with their counts, and the ``selected`` ones even when not found;
        ``url(value)`` is the link toggling a value."""
        counts = Counter(str(v) for v in found if v not in (None, ""))
        values = [v for v, _ in counts.most_common(shown)]
        values += sorted(set(selected) - set(values))
        return cls(
            name, label, [FacetValue(v, counts.get(v, 0), v in selected, url(v)) for v in values]
        )


class SearchPaginator(Paginator):  # type: ignore[type-arg]
    """A ``Paginator`` over the hits found so far, up to one past the page asked for: ``count``
    and ``num_pages`` are a lower bound (enough for ``has_next()``), and a page past the last
    result is empty rather than ``EmptyPage``."""

    def validate_number(self, number: Any) -> int:
        try:
            return super().validate_number(number)
        except EmptyPage:
            if int(number) >= 1:
                return int(number)
            raise


def page_context(page: Page[Any], per_page: int, url: Callable[[int], str]) -> dict[str, Any]:
    """The template context of a page of results (``url(number)`` links to another page).

    ListView's names, ``page_obj``, ``paginator``, ``is_paginated``, and ``object_list``
    (= ``results``), beside the search page's own: ``results``, ``page`` (its number),
    ``per_page``, ``has_next``, ``has_previous``, ``next_url``, ``previous_url``,
    ``first_number`` and ``last_number`` (the numbers of its first and last result).
    """
    results = list(page.object_list)
    first = (page.number - 1) * per_page + 1
    return {
        "results": results,
        "object_list": results,
        "paginator": page.paginator,
        "page_obj": page,
        "is_paginated": page.has_other_pages(),
        "page": page.number,
        "per_page": per_page,
        "has_next": page.has_next(),
        "has_previous": page.has_previous(),
        "next_url": url(page.number + 1) if page.has_next() else None,
        "previous_url": url(page.number - 1) if page.has_previous() else None,
        "first_number": first,
        "last_number": first - 1 + len(results),
    }


def finite(value: Any) -> float | None:
    """A score or distance for JSON and sorting: NaN and infinity (a zero vector's cosine) are
    None."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def snippet(text: str, title: str, query: str, *, length: int = 240) -> SafeString:
    """:func:`highlight` of ``text`` shown under ``title``: without a leading copy of the title.

    The embedded text often starts with the title (``fields=["title", "body"]``), or the title
    with a suffix ("... (part 2)") starts with the text's first paragraph.
    """
    first, _, rest = text.partition("\n\n")
    if title and text.startswith(title):
        text = text[len(title) :].lstrip()
    elif first.strip() and rest and title.startswith(first.strip()):
        text = rest
    return highlight(text, query, length=length)


def highlight(text: str, query: str, *, length: int = 240) -> SafeString:
    """A snippet of ``text`` around the first word of ``query`` it contains, as safe HTML.

    The text is escaped before anything is marked: the matches are found in the plain text and
    each piece, matched or not, goes through :func:`~django.utils.html.escape`; only the
    ``<mark>`` tags added around matches are trusted. (Marking words inside already-escaped text
    could put a tag in the middle of an entity: a query for "amp" in ``&amp;``.) Words match
    case-insensitively, those of four letters or more with up to three more letters, as a
    search for "password" should mark "Passwords".
    """
    text = " ".join(text.split())
    words = sorted({w.lower() for w in _WORD.findall(query)}, key=len, reverse=True)[:32]
    # Words of 4+ letters also match with a short ending (password: passwords, file: filed);
    # shorter ones only whole, or "by" would mark "bytes".
    alternatives = [re.escape(w) + (r"\w{0,3}" if len(w) >= 4 else "") for w in words]
    pattern = (
        re.compile(r"\b(?:" + "|".join(alternatives) + r")\b", re.IGNORECASE) if words else None
    )
    start = 0
    first = pattern.search(text) if pattern else None
    if first and first.start() > length // 3:
        # Some words of context before the first match, starting at a word.
        start = text.rfind(" ", 0, first.start() - length // 4) + 1
    end = start + length
    if end < len(text):
        end = text.rfind(" ", start, end) if text.rfind(" ", start, end) > start else end
    window = text[start:end]
    pieces: list[str] = ["\u2026 " if start > 0 else ""]
    position = 0
    for match in pattern.finditer(window) if pattern else ():
        pieces.append(escape(window[position : match.start()]))
        pieces.append(f"<mark>{escape(match.group())}</mark>")
        position = match.end()
    pieces.append(escape(window[position:]))
    if end < len(text):
        pieces.append(" \u2026")
    # Safe: every piece of text was escaped above; only the <mark> tags are ours.
    return mark_safe("".join(pieces))

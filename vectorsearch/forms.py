"""The search form of the search page and JSON API (:mod:`vectorsearch.views`).

:class:`SearchForm` checks every GET parameter of a search before any SQL runs: ``q``,
``model``, ``page``, ``per_page``, ``mode`` and one field per whitelisted filter. Anything else
is an error naming what is accepted, except the tracking parameters the view ignores.

(Not django-filter: its FilterSet is per model, while one search spans several models whose
whitelists differ; its repeated-value filters take choices from the database, and this form
must decide before any SQL. A plain ``Form`` with one small field class does it, with no new
dependency.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import unquote_to_bytes

from django import forms
from django.core.exceptions import FieldDoesNotExist, TooManyFieldsSent, ValidationError
from django.db.models import Field, Model
from django.http import HttpRequest, QueryDict
from django.utils.translation import gettext_lazy as _

from .conf import get_settings

__all__ = [
    "MODES",
    "PARAMETERS",
    "TRACKING_PARAMETERS",
    "FilterField",
    "SearchForm",
    "checked_data",
    "is_concrete",
    "is_utf8",
    "page_url",
    "toggled_url",
]

#: The parameters every search accepts; any other must be a whitelisted filter.
PARAMETERS = ("q", "model", "page", "per_page", "mode")
#: Parameters that links from newsletters, ads and social sites add (shell-style patterns).
TRACKING_PARAMETERS = (
    *("utm_*", "fbclid", "gclid", "dclid", "gbraid", "wbraid", "msclkid", "yclid"),
    *("mc_cid", "mc_eid", "_ga", "_gl"),
)
#: How results are ranked (issue #11): by meaning, by meaning and words fused, by words.
MODES = (
    ("semantic", _("By meaning")),
    ("hybrid", _("By meaning and words")),
    ("keyword", _("By words")),
)


class FilterField(forms.Field):
    """A whitelisted filter: every value given (``?category=a&category=b`` means either).

    ``model_fields`` are the model fields of that name, one per model that whitelists it; a
    value must suit each model searched (:meth:`check_for`), or the database would error.
    """

    widget = forms.MultipleHiddenInput  # reads every value of the name (QueryDict.getlist)

    def __init__(self, model_fields: Mapping[type[Model], Field[Any, Any]], **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)
        self.model_fields = dict(model_fields)

    def to_python(self, value: Any) -> list[str]:
        return [str(v) for v in value] if value else []

    def check_for(self, model: type[Model], name: str, values: list[str]) -> None:
        """Raise ValidationError unless every value is one ``model``'s field can hold."""
        field = self.model_fields[model]
        max_length = getattr(field, "max_length", None)
        for value in values:
            try:
                field.to_python(value)
                if max_length is not None and len(value) > max_length:
                    raise ValidationError("too long")
            except ValidationError:
                raise ValidationError(
                    _("%(value)s is not a valid value for %(name)s."),
                    code="invalid_filter",
                    params={"value": quote(value), "name": quote(name)},
                ) from None


class SearchForm(forms.Form):
    """A search's parameters, bounded by the ``SEARCH_*`` settings.

    - ``models`` maps each model the view searches to the filter names it accepts (its order
      is the order of the ``model`` choices; ``""``, every model, is always allowed);
    - ``per_page`` and ``mode`` are the defaults when the request gives none;
    - ``ignore(name)`` tells tracking parameters (``utm_source``...) to leave alone;
    - ``query_required=False`` lets a request without ``q`` through (the page before a search);
      ``q=`` given blank is still an error.

    ``cleaned_data`` holds ``q``, ``model``, ``page``, ``per_page``, ``mode``, one list per
    filter field, and after :meth:`clean`: ``models`` (the models to search: the chosen one,
    and only those having every filter asked for) and ``filters`` (name: values asked for).
    """

    q = forms.CharField(
        label=_("Search for"),
        strip=True,
        error_messages={"required": _("Type something to search for.")},
    )
    model = forms.ChoiceField(label=_("In"), required=False)
    page = forms.IntegerField(
        label=_("Page"),
        required=False,
        min_value=1,
        error_messages={
            "invalid": _("page must be a whole number."),
            "min_value": _("page must be 1 or more."),
        },
    )
    per_page = forms.IntegerField(
        label=_("Results per page"),
        required=False,
        min_value=1,
        error_messages={
            "invalid": _("per_page must be a whole number."),
            "min_value": _("per_page must be 1 or more."),
        },
    )
    mode = forms.ChoiceField(
        label=_("Rank"),
        choices=MODES,
        required=False,
        error_messages={
            "invalid_choice": _("mode must be one of semantic, hybrid or keyword, not %(value)s.")
        },
    )

    def __init__(
        self,
        data: Any = None,
        *,
        models: Mapping[type[Model], Sequence[str]],
        per_page: int | None = None,
        mode: str = "semantic",
        ignore: Callable[[str], bool] = lambda name: False,
        query_required: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(data, **kwargs)
        conf = get_settings()
        self.models = dict(models)
        self.ignore = ignore
        self._max_length: int = conf["SEARCH_MAX_QUERY_LENGTH"]
        self._max_per_page: int = conf["SEARCH_MAX_PER_PAGE"]
        self._max_results: int = min(conf["SEARCH_MAX_RESULTS"], conf["MAX_K"])
        self.default_per_page = min(per_page or conf["SEARCH_PER_PAGE"], self._max_per_page)
        self.default_mode = mode
        model_field = self.fields["model"]
        assert isinstance(model_field, forms.ChoiceField)
        model_field.choices = [
            ("", _("Everything")),
            *((m._meta.label_lower, m._meta.verbose_name_plural) for m in self.models),
        ]
        model_field.error_messages["invalid_choice"] = _(
            "Unknown model %(value)s: choose one of the models offered."
        )
        self.fields["q"].widget.attrs.update(
            {"type": "search", "maxlength": self._max_length, "autocomplete": "off"}
        )
        if not query_required and (data is None or "q" not in data):
            self.fields["q"].required = False
        for name in sorted({name for names in self.models.values() for name in names}):
            if name in PARAMETERS:  # a model field named like a parameter cannot be a filter
                continue
            found = {m: _field(m, name) for m, names in self.models.items() if name in names}
            label = next(iter(found.values())).verbose_name
            self.fields[name] = FilterField({m: f for m, f in found.items()}, label=label)

    @property
    def filter_names(self) -> list[str]:
        """The whitelisted filters this form accepts."""
        return [name for name, f in self.fields.items() if isinstance(f, FilterField)]

    def clean_q(self) -> str:
        value: str = self.cleaned_data["q"]
        if len(value) > self._max_length:
            raise forms.ValidationError(
                _("The search text is too long: at most %(max)d characters, not %(length)d."),
                code="max_length",
                params={"max": self._max_length, "length": len(value)},
            )
        return value

    def clean_page(self) -> int:
        return self.cleaned_data["page"] or 1

    def clean_per_page(self) -> int:
        value: int | None = self.cleaned_data["per_page"]
        if value is not None and value > self._max_per_page:
            raise forms.ValidationError(
                _("per_page must be at most %(max)d."),
                code="max_value",
                params={"max": self._max_per_page},
            )
        return value or self.default_per_page

    def clean_mode(self) -> str:
        return self.cleaned_data["mode"] or self.default_mode

    def clean(self) -> dict[str, Any]:
        """The checks across parameters: NUL characters, unknown parameters, the depth of the
        page, which models can take the filters asked for and the filters' values."""
        data = super().clean() or {}
        lists = self.data.lists() if hasattr(self.data, "lists") else self.data.items()
        for key, values in lists:
            if any("\x00" in text for text in (key, *values)):
                raise ValidationError(_("The request contains a NUL character."), code="nul")
        accepted = [*PARAMETERS, *self.filter_names]
        for key in self.data:
            if key not in accepted and not self.ignore(key):
                raise ValidationError(
                    _("Unknown parameter %(name)s: this search accepts %(accepted)s."),
                    code="unknown",
                    params={"name": quote(key), "accepted": ", ".join(accepted)},
                )
        if self.errors:  # the checks below need the fields' values
            return data
        page, per_page = data["page"], data["per_page"]
        if page * per_page > self._max_results:
            raise ValidationError(
                _("page must be at most %(last)d with %(per_page)d results per page."),
                code="max_value",
                params={"last": max(self._max_results // per_page, 1), "per_page": per_page},
            )
        filters = {name: data[name] for name in self.filter_names if name in self.data}
        chosen = [m for m in self.models if data["model"] in ("", m._meta.label_lower)]
        # Models that do not have every filter asked for cannot match it.
        models = [m for m in chosen if set(filters) <= set(self.models[m])]
        if not models and filters:
            raise ValidationError(
                _("No model here can be filtered on %(names)s."),
                code="no_model",
                params={"names": ", ".join(quote(name) for name in filters)},
            )
        for name, values in filters.items():
            field = self.fields[name]
            assert isinstance(field, FilterField)
            for model in models:
                field.check_for(model, name, values)
        data["models"], data["filters"] = models, filters
        return data

    def error_message(self) -> str:
        """The one message a refused search shows: a request-wide error first, else the first
        field's."""
        for message in [*self.non_field_errors(), *(m for e in self.errors.values() for m in e)]:
            return str(message)
        return str(_("Invalid search."))


def quote(name: str) -> str:
    """A parameter name or value for a message: quoted, and cut short (it could be 10 kB)."""
    return repr(name if len(name) <= 40 else name[:40] + "\u2026")


def _field(model: type[Model], name: str) -> Field[Any, Any]:
    try:
        field = model._meta.get_field(name)
    except FieldDoesNotExist:
        raise ValueError(f"{model._meta.label} has no field {name!r} to filter on.") from None
    assert isinstance(field, Field)
    return field


def checked_data(request: HttpRequest) -> QueryDict:
    """``request.GET``; ValidationError when the parameters are too many or not UTF-8.

    Django decodes a query string with errors="replace", so a bad byte and a U+FFFD typed on
    purpose look the same in ``request.GET``: the raw query string tells them apart.
    """
    try:
        # Parsed on first access; more than DATA_UPLOAD_MAX_NUMBER_FIELDS parameters raise.
        data = request.GET
    except TooManyFieldsSent:
        raise ValidationError(
            _("Too many parameters: a search takes a few, not thousands."), code="too_many"
        ) from None
    if not is_utf8(request.META.get("QUERY_STRING", "")):
        raise ValidationError(_("The request is not valid UTF-8."), code="encoding")
    return data


def is_utf8(query_string: str) -> bool:
    """Whether the raw query string, percent-decoded, is valid UTF-8."""
    try:
        raw = query_string.encode("iso-8859-1")  # WSGI: the request's bytes (PEP 3333)
    except UnicodeEncodeError:
        raw = query_string.encode()  # ASGI: already decoded
    try:
        unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def page_url(params: QueryDict, page: int) -> str:
    """The query string with ``page`` set."""
    copy = params.copy()
    copy["page"] = str(page)
    return "?" + copy.urlencode()


def toggled_url(params: QueryDict, name: str, value: str) -> str:
    """The query string with ``name=value`` added, or removed when present; back to page 1."""
    copy = params.copy()
    values = copy.getlist(name)
    copy.setlist(name, [v for v in values if v != value] if value in values else [*values, value])
    copy.pop("page", None)
    return "?" + copy.urlencode()


def is_concrete(model: type[Model], name: str) -> bool:
    """Whether ``name`` is a concrete field of ``model`` (not unknown, a relation path, reverse)."""
    try:
        return bool(getattr(model._meta.get_field(name), "concrete", False))
    except FieldDoesNotExist:
        return False

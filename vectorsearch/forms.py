"""The search form of the search page and JSON API (:mod:`vectorsearch.views`)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from .conf import get_settings

__all__ = ["SearchForm"]


class SearchForm(forms.Form):
    """``q``, ``model``, ``page`` and ``per_page``, bounded by the ``SEARCH_*`` settings.

    ``models`` are the ``(app_label.model_name, label)`` choices of the ``model`` field; ``""``
    (every model) is always allowed. Filters are not fields: the view checks them against the
    registrations' whitelists, since they depend on the model chosen.
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

    def __init__(self, *args: Any, models: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        conf = get_settings()
        model_field = self.fields["model"]
        assert isinstance(model_field, forms.ChoiceField)
        model_field.choices = [("", _("Everything")), *models]
        model_field.error_messages["invalid_choice"] = _(
            "Unknown model %(value)s: choose one of the models offered."
        )
        self._max_length: int = conf["SEARCH_MAX_QUERY_LENGTH"]
        self._max_per_page: int = conf["SEARCH_MAX_PER_PAGE"]
        self._max_results: int = min(conf["SEARCH_MAX_RESULTS"], conf["MAX_K"])
        self.fields["q"].widget.attrs.update(
            {"type": "search", "maxlength": self._max_length, "autocomplete": "off"}
        )

    def clean_q(self) -> str:
        value: str = self.cleaned_data["q"]
        if len(value) > self._max_length:
            raise forms.ValidationError(
                _("The search text is too long: at most %(max)d characters, not %(length)d."),
                code="max_length",
                params={"max": self._max_length, "length": len(value)},
            )
        return value

    def clean_per_page(self) -> int | None:
        value: int | None = self.cleaned_data["per_page"]
        if value is not None and value > self._max_per_page:
            raise forms.ValidationError(
                _("per_page must be at most %(max)d."),
                code="max_value",
                params={"max": self._max_per_page},
            )
        return value

    def check_depth(self, page: int, per_page: int) -> None:
        """Raise ValidationError when ``page`` lies deeper than ``SEARCH_MAX_RESULTS``."""
        if page * per_page > self._max_results:
            last = max(self._max_results // per_page, 1)
            raise forms.ValidationError(
                _("page must be at most %(last)d with %(per_page)d results per page."),
                code="max_value",
                params={"last": last, "per_page": per_page},
            )

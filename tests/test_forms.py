"""SearchForm: every parameter of the search page and API checked before any SQL runs."""

from django.http import QueryDict
from django.test import SimpleTestCase

from tests.embedapp.models import Article, Note
from vectorsearch.forms import FilterField, SearchForm


def form(query_string, **kwargs):
    kwargs.setdefault("models", {Note: ("category", "id"), Article: ()})
    return SearchForm(QueryDict(query_string), **kwargs)


def cleaned(query_string, **kwargs):
    f = form(query_string, **kwargs)
    assert f.is_valid(), f.errors
    return f.cleaned_data


class SearchFormTests(SimpleTestCase):
    def test_each_whitelisted_filter_is_a_field_labelled_like_the_model_field(self):
        fields = form("").fields
        assert isinstance(fields["category"], FilterField)
        assert fields["category"].label == "category"
        assert list(fields) == ["q", "model", "page", "per_page", "mode", "category", "id"]

    def test_a_valid_search_is_cleaned_with_its_defaults(self):
        f = form("q=+reset+&category=a&category=b", per_page=20, mode="semantic")
        assert f.is_valid(), f.errors
        data = f.cleaned_data
        assert (data["q"], data["page"], data["per_page"], data["mode"]) == (
            "reset",
            1,
            20,
            "semantic",
        )
        assert data["filters"] == {"category": ["a", "b"]}
        assert data["models"] == [Note]  # Article has no category

    def test_filter_values_are_checked_with_the_model_fields_to_python_and_max_length(self):
        assert form("q=x&id=abc").error_message() == "'abc' is not a valid value for 'id'."
        too_long = form("q=x&category=" + "c" * 21).error_message()
        assert too_long == f"'{'c' * 21}' is not a valid value for 'category'."
        assert form("q=x&category=" + "c" * 20).is_valid()

    def test_a_filter_no_chosen_model_has_is_refused(self):
        message = form("q=x&model=embedapp.article&category=a").error_message()
        assert message == "No model here can be filtered on 'category'."

    def test_unknown_parameters_are_refused_naming_the_accepted_ones_tracking_ones_ignored(self):
        message = form("q=x&ordering=title").error_message()
        assert message == (
            "Unknown parameter 'ordering': this search accepts q, model, page, per_page, mode, "
            "category, id."
        )
        ignore = lambda name: name.startswith("utm_")  # noqa: E731
        assert form("q=x&utm_source=mail", ignore=ignore).is_valid()
        assert not form("q=x&utm_source=mail").is_valid()

    def test_a_nul_anywhere_is_refused_before_the_field_errors(self):
        assert form("q=a%00b").error_message() == "The request contains a NUL character."
        assert form("q=x&category=a%00").error_message() == "The request contains a NUL character."

    def test_mode_defaults_to_the_views_and_takes_only_the_known_ones(self):
        assert cleaned("q=x", mode="hybrid")["mode"] == "hybrid"
        assert cleaned("q=x&mode=keyword")["mode"] == "keyword"
        assert form("q=x&mode=fuzzy").error_message() == (
            "mode must be one of semantic, hybrid or keyword, not fuzzy."
        )

    def test_the_page_may_come_without_q_but_not_with_a_blank_one(self):
        assert cleaned("model=embedapp.note", query_required=False)["q"] == ""
        assert form("q=", query_required=False).error_message() == "Type something to search for."
        assert form("").error_message() == "Type something to search for."

    def test_a_page_deeper_than_search_max_results_is_refused(self):
        assert form("q=x&page=101").error_message() == (
            "page must be at most 100 with 10 results per page."
        )
        assert form("q=x&page=100").is_valid()

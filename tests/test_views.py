"""The search page (vectorsearch:search): results, snippets, facets, pages, kind errors, and
VectorSearchView as a base class."""

import re

import pytest
from django.test import RequestFactory, SimpleTestCase, override_settings

from tests.embedapp.models import Article, Note
from vectorsearch.views import VectorSearchView, highlight

PAGE = "/search/"

NOTES = [
    ("How to reset your password", "account"),
    ("Password reset email never arrived", "account"),
    ("Change the password of a shared account", "account"),
    ("Password rules for the orders desk", "orders"),
    ("Shipping times to Europe", "orders"),
    ("<b>Bold</b> <script>alert('x')</script> password", "security"),
]


@pytest.fixture
def notes(db):
    return [Note.objects.create(title=t, body=f"About: {t}.", category=c) for t, c in NOTES]


def text_of(response):
    return response.content.decode()


class HighlightTests(SimpleTestCase):
    def test_text_is_escaped_and_only_matches_are_marked(self):
        html = highlight("Use <b>reset</b> & then Passwords.", "reset password")
        assert html == (
            "Use &lt;b&gt;<mark>reset</mark>&lt;/b&gt; &amp; then <mark>Passwords</mark>."
        )

    def test_words_never_match_inside_the_entities_escaping_makes(self):
        assert highlight("a & b < c", "amp lt") == "a &amp; b &lt; c"

    def test_a_long_text_is_cut_around_the_first_match(self):
        text = " ".join(["filler"] * 200) + " the needle is here " + " ".join(["tail"] * 200)
        html = highlight(text, "needle", length=80)
        assert html.startswith("\u2026 ") and html.endswith(" \u2026")
        assert "<mark>needle</mark>" in html
        assert len(re.sub("<[^>]+>", "", html)) <= 80 + 4

    def test_short_words_match_whole_and_long_ones_with_an_ending(self):
        html = highlight(
            "Read bytes by line; read lines of files in fileinput", "read by line file"
        )
        assert html == (
            "<mark>Read</mark> bytes <mark>by</mark> <mark>line</mark>; <mark>read</mark> "
            "<mark>lines</mark> of <mark>files</mark> in fileinput"
        )

    def test_a_query_without_words_marks_nothing(self):
        assert highlight("a + b", "+ ?") == "a + b"


def test_the_page_before_a_search_shows_a_labelled_form(client, db):
    response = client.get(PAGE)
    assert response.status_code == 200
    html = text_of(response)
    assert '<label for="id_q">Search for</label>' in html
    assert 'role="search"' in html and 'method="get"' in html
    assert "<main" in html
    assert "vs-result-list" not in html and 'role="alert"' not in html


def test_results_show_title_score_and_highlighted_snippet(client, notes):
    response = client.get(PAGE, {"q": "reset password", "model": "embedapp.note"})
    assert response.status_code == 200
    html = text_of(response)
    titles = re.findall(r'<h3 class="vs-result-title">(.*?)</h3>', html)
    assert titles[0] == "How to reset your password"
    assert "Results 1\u20136 for \u201creset password\u201d" in html
    assert "<mark>reset</mark>" in html and "<mark>password</mark>" in html
    assert re.search(r"score </span>0\.\d{3}</p>", html)
    assert response.context["results"][0].score > response.context["results"][-1].score


def test_snippets_do_not_repeat_the_title(client, notes, monkeypatch):
    response = client.get(PAGE, {"q": "shipping", "model": "embedapp.note"})
    result = next(r for r in response.context["results"] if r.title.startswith("Shipping"))
    assert result.snippet == "About: <mark>Shipping</mark> times to Europe."
    # A title longer than the first paragraph of the text (a "part 2" suffix) counts too.
    monkeypatch.setattr(Note, "__str__", lambda n: f"{n.title} (part 2)")
    response = client.get(PAGE, {"q": "shipping", "model": "embedapp.note"})
    result = next(r for r in response.context["results"] if r.title.startswith("Shipping"))
    assert result.snippet == "About: <mark>Shipping</mark> times to Europe."


def test_html_in_document_text_is_escaped_in_titles_and_snippets(client, notes):
    html = text_of(client.get(PAGE, {"q": "password", "category": "security"}))
    assert "<script>" not in html and "<b>Bold" not in html
    assert "&lt;b&gt;Bold&lt;/b&gt; &lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html


def test_results_link_to_get_absolute_url(client, notes, monkeypatch):
    monkeypatch.setattr(Note, "get_absolute_url", lambda n: f"/notes/{n.pk}/", raising=False)
    html = text_of(client.get(PAGE, {"q": "shipping", "model": "embedapp.note"}))
    assert f'<a href="/notes/{notes[4].pk}/">Shipping times to Europe</a>' in html


def test_facets_count_values_and_toggle_a_filter(client, notes):
    response = client.get(PAGE, {"q": "password", "model": "embedapp.note"})
    (facet,) = response.context["facets"]
    assert facet.name == "category"
    counts = {v.value: v.count for v in facet.values}
    assert counts == {"account": 3, "orders": 2, "security": 1}
    orders = next(v for v in facet.values if v.value == "orders")
    assert not orders.selected
    assert 'aria-label="Filters"' in text_of(response)

    response = client.get(PAGE + orders.url)
    titles = {r.title for r in response.context["results"]}
    assert titles == {"Password rules for the orders desk", "Shipping times to Europe"}
    (facet,) = response.context["facets"]
    selected = next(v for v in facet.values if v.value == "orders")
    assert selected.selected
    # The other values stay offered, counted without this filter.
    assert {v.value: v.count for v in facet.values}["account"] == 3
    assert 'aria-current="true"' in text_of(response)
    # Its link removes the filter again.
    response = client.get(PAGE + selected.url)
    assert len(response.context["results"]) == 6


def test_pages_link_to_each_other_and_keep_the_filters(client, notes):
    response = client.get(PAGE, {"q": "password", "category": "account", "per_page": 2})
    assert [r.title for r in response.context["results"]][:1] and response.context["has_next"]
    next_url = response.context["next_url"]
    assert "category=account" in next_url and "page=2" in next_url
    assert 'rel="next"' in text_of(response)
    second = client.get(PAGE + next_url)
    assert second.context["page"] == 2
    assert 'start="3"' in text_of(second)
    assert not second.context["has_next"]
    first_titles = {r.title for r in response.context["results"]}
    assert first_titles.isdisjoint({r.title for r in second.context["results"]})


def test_tracking_parameters_from_a_newsletter_link_are_ignored_not_refused(client, notes):
    plain = client.get(PAGE, {"q": "cats"})
    tracked = client.get(
        PAGE, {"q": "cats", "utm_source": "newsletter", "utm_medium": "email", "fbclid": "x1"}
    )
    assert tracked.status_code == 200
    assert [r.title for r in tracked.context["results"]] == [
        r.title for r in plain.context["results"]
    ]
    assert client.get(PAGE, {"q": "cats", "utm": "x"}).status_code == 400  # not a pattern


def test_a_bad_request_is_shown_kindly_with_status_400(client, notes):
    response = client.get(PAGE, {"q": "x", "password__startswith": "a"})
    assert response.status_code == 400
    html = text_of(response)
    assert 'role="alert"' in html
    assert "Sorry, we could not run that search." in html
    assert "Unknown parameter &#x27;password__startswith&#x27;" in html
    assert 'aria-describedby="vs-error"' in html  # the field points at the message
    assert 'value="x"' in html  # the text typed is kept


@pytest.mark.parametrize(
    "params",
    [
        {"q": ""},
        {"q": "a" * 10_240},
        {"q": "x", "page": "abc"},
        {"q": "x", "model": "auth.user"},
        {"q": "x\x00y"},
        {"q": "x", "ordering": "password"},
        {"page": "0"},
    ],
)
def test_bad_input_on_the_page_is_a_400_never_a_500(client, notes, params):
    response = client.get(PAGE, params)
    assert response.status_code == 400
    assert 'role="alert"' in text_of(response)


def test_too_many_parameters_on_the_page_is_a_kind_400(client, db):
    response = client.get(PAGE + "?" + "&".join(f"p{i}=1" for i in range(1500)))
    assert response.status_code == 400
    assert "Too many parameters" in text_of(response)


def test_the_page_loads_nothing_from_outside_the_site(client, notes):
    html = text_of(client.get(PAGE, {"q": "password"}))
    for url in re.findall(r'(?:src|href)="([^"]*)"', html):
        assert url.startswith(("/", "?", "#")), url
    assert "/static/vectorsearch/search.css" in html
    assert "style=" not in html and "<script" not in html


def test_templates_can_be_overridden_by_the_site(client, notes, tmp_path):
    override = tmp_path / "vectorsearch" / "includes"
    override.mkdir(parents=True)
    (override / "result.html").write_text("<li class='mine'>{{ result.title }}</li>")
    templates = [
        {
            "BACKEND": "django.template.backends.django.DjangoTemplates",
            "DIRS": [tmp_path],
            "APP_DIRS": True,
        }
    ]
    with override_settings(TEMPLATES=templates):
        html = text_of(client.get(PAGE, {"q": "shipping", "model": "embedapp.note"}))
    assert "<li class='mine'>Shipping times to Europe</li>" in html


class AccountNotes(VectorSearchView):
    queryset = Note.objects.filter(category="account")
    filters = []
    paginate_by = 2


def test_a_subclass_narrows_the_queryset_filters_and_page_size(notes):
    request = RequestFactory().get(PAGE, {"q": "password"})
    response = AccountNotes.as_view()(request)
    response.render()
    results = response.context_data["results"]
    assert len(results) == 2 and response.context_data["has_next"]
    assert all(r.object.category == "account" for r in results)
    assert response.context_data["facets"] == []
    request = RequestFactory().get(PAGE, {"q": "password", "category": "orders"})
    assert AccountNotes.as_view()(request).status_code == 400  # not whitelisted here


class SlowNotes(VectorSearchView):
    queryset = Note.objects.extra(where=["pg_sleep(0.3) IS NOT NULL"])


class BrokenNotes(VectorSearchView):
    queryset = Note.objects.extra(where=["1 / (id - id) = 1"])


@override_settings(VECTORSEARCH={"SEARCH_STATEMENT_TIMEOUT_MS": 100})
def test_a_search_past_the_statement_timeout_is_a_503_with_a_message(notes):
    response = SlowNotes.as_view()(RequestFactory().get(PAGE, {"q": "password"}))
    response.render()
    assert response.status_code == 503
    html = text_of(response)
    assert "The search took too long; try fewer words or a filter." in html
    assert "cancel" not in html.lower()  # PostgreSQL's "canceling statement due to ..."


def test_a_database_error_is_a_503_without_the_databases_text(notes):
    response = BrokenNotes.as_view()(RequestFactory().get(PAGE, {"q": "password"}))
    response.render()
    assert response.status_code == 503
    html = text_of(response)
    assert "Search is unavailable right now" in html
    assert "division" not in html.lower()
    assert Note.objects.count() == len(NOTES)  # the connection is usable afterwards


class NothingRegistered(VectorSearchView):
    models = []


def test_a_view_over_no_registered_model_says_so(db):
    response = NothingRegistered.as_view()(RequestFactory().get(PAGE, {"q": "x"}))
    response.render()
    assert response.status_code == 503
    assert "There is nothing to search here yet." in text_of(response)


class NotesAndArticles(VectorSearchView):
    models = [Note, Article]
    filters = ["category"]  # a field of Note only


def test_a_view_filter_applies_to_the_models_that_have_the_field(notes):
    Article.objects.create(title="Resetting a password", body="reset the password")
    response = NotesAndArticles.as_view()(
        RequestFactory().get(PAGE, {"q": "password", "category": "account"})
    )
    response.render()
    assert response.status_code == 200
    results = response.context_data["results"]
    assert results  # the Notes in "account" are found...
    assert {r.model for r in results} == {"embedapp.note"}  # ...and no Article can match


def test_statement_timeout_cancels_a_slow_query_and_puts_the_callers_setting_back(db):
    from django.db import OperationalError, connection

    from vectorsearch.db import is_timeout, statement_timeout

    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL statement_timeout = '7s'")
    with (
        pytest.raises(OperationalError) as info,
        statement_timeout(50),
        connection.cursor() as cursor,
    ):
        cursor.execute("SELECT pg_sleep(2)")
    assert is_timeout(info.value)
    with statement_timeout(5000), connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone()[0] == "5s"
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone()[0] == "7s"


def test_a_page_embeds_the_search_text_once_for_results_and_facets(client, notes, monkeypatch):
    from vectorsearch import embedders

    embedder = embedders["default"]
    calls = []
    original = embedder.embed_one

    def counting(text):
        calls.append(text)
        return original(text)

    monkeypatch.setattr(embedder, "embed_one", counting)
    response = client.get(PAGE, {"q": "password", "model": "embedapp.note"})
    assert response.status_code == 200
    assert response.context["facets"]  # the category facet ran its own search
    assert calls == ["password"]


def test_the_template_gets_listviews_page_obj_paginator_and_is_paginated(client, notes):
    response = client.get(PAGE, {"q": "password", "category": "account", "per_page": 2})
    page_obj = response.context["page_obj"]
    assert page_obj.number == 1 and page_obj.has_next() and not page_obj.has_previous()
    assert response.context["paginator"].per_page == 2
    assert response.context["is_paginated"] is True
    assert list(page_obj.object_list) == response.context["results"]
    assert response.context["object_list"] == response.context["results"]
    # One page holds everything: not paginated, and no pagination links.
    response = client.get(PAGE, {"q": "password", "category": "account"})
    assert response.context["is_paginated"] is False
    assert 'aria-label="Result pages"' not in text_of(response)


def test_a_page_past_the_last_result_is_empty_with_a_link_back(client, notes):
    response = client.get(PAGE, {"q": "password", "model": "embedapp.note", "page": 5})
    assert response.status_code == 200
    assert response.context["results"] == [] and not response.context["has_next"]
    assert response.context["page_obj"].number == 5
    assert 'rel="prev"' in text_of(response) and "page=4" in response.context["previous_url"]


class OrdersOnlyRanking(VectorSearchView):
    """A site's own ranking: only what search_registration() returns is shown and counted."""

    calls = []

    def search_registration(self, registration, queryset, query_or_vector, k, mode):
        self.calls.append((registration.model.__name__, k, mode))
        queryset = queryset.filter(category="orders")
        return super().search_registration(registration, queryset, query_or_vector, k, mode)


def test_search_registration_is_the_one_place_the_page_ranks(notes):
    OrdersOnlyRanking.calls.clear()
    request = RequestFactory().get(PAGE, {"q": "password", "model": "embedapp.note"})
    response = OrdersOnlyRanking.as_view()(request)
    response.render()
    assert {r.object.category for r in response.context_data["results"]} == {"orders"}
    (facet,) = response.context_data["facets"]
    assert {v.value: v.count for v in facet.values} == {"orders": 2}
    # The results (a page and one more) and the category facet, in the view's mode.
    assert OrdersOnlyRanking.calls == [("Note", 11, "hybrid"), ("Note", 100, "hybrid")]


def test_keyword_mode_on_the_page_ranks_by_the_words(client, notes):
    response = client.get(PAGE, {"q": "shipping", "mode": "keyword", "model": "embedapp.note"})
    assert response.status_code == 200
    titles = [r.title for r in response.context_data["results"]]
    assert titles == ["Shipping times to Europe"]


def test_a_literal_replacement_character_in_the_search_is_kept(client, notes):
    response = client.get(PAGE, {"q": "password \ufffd"})
    assert response.status_code == 200
    assert 'value="password \ufffd"' in text_of(response)


def test_the_form_keeps_the_mode_it_was_opened_with(client, notes):
    html = text_of(client.get(PAGE, {"q": "password", "mode": "semantic"}))
    assert '<input type="hidden" name="mode" value="semantic">' in html
    assert 'name="mode"' not in text_of(client.get(PAGE, {"q": "password"}))

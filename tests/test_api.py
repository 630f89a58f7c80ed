"""The JSON API (vectorsearch:api): its format, and a 400 with a message for every bad input."""

import json

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import RequestFactory, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

import vectorsearch
from tests.embedapp.models import Article, Note
from vectorsearch.exceptions import EmbeddingError
from vectorsearch.management.utils import generic_index_name
from vectorsearch.registry import registry
from vectorsearch.views import VectorSearchAPIView

pytestmark = pytest.mark.django_db

API = "/search/api/"

NOTES = [
    ("How to reset your password", "account"),
    ("Password reset email never arrived", "account"),
    ("Change the password of a shared account", "account"),
    ("Shipping times to Europe", "orders"),
    ("Return a damaged parcel", "orders"),
    ("<script>alert(1)</script> password trick", "security"),
]


@pytest.fixture
def notes():
    return [Note.objects.create(title=t, body=f"{t}. More about it.", category=c) for t, c in NOTES]


def get(client, path=API, **params):
    response = client.get(path, params)
    return response, json.loads(response.content)


def error_of(client, query_string):
    response = client.get(f"{API}?{query_string}")
    assert response.status_code == 400, response.content
    body = json.loads(response.content)
    assert set(body) == {"error"}
    return body["error"]


def test_urls_are_namespaced():
    assert reverse("vectorsearch:search") == "/search/"
    assert reverse("vectorsearch:api") == API


def test_the_api_returns_the_documented_format(client, notes):
    response, body = get(client, q="reset password", model="embedapp.note", per_page=2)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert set(body) == {"query", "results", "page", "per_page", "has_next"}
    assert body["query"] == "reset password"
    assert (body["page"], body["per_page"], body["has_next"]) == (1, 2, True)
    first = body["results"][0]
    assert set(first) == {"model", "pk", "title", "url", "score", "snippet"}
    assert first["model"] == "embedapp.note"
    assert first["title"] == "How to reset your password"
    assert first["pk"] == notes[0].pk
    assert first["url"] is None  # Note has no get_absolute_url
    assert 0 < first["score"] <= 1
    assert body["results"][0]["score"] >= body["results"][1]["score"]
    assert "<mark>reset</mark>" in first["snippet"]
    assert "<mark>password</mark>" in first["snippet"]


def test_pages_follow_on_without_overlap(client, notes):
    _, one = get(client, q="password", model="embedapp.note", per_page=2, page=1)
    _, two = get(client, q="password", model="embedapp.note", per_page=2, page=2)
    _, all_ = get(client, q="password", model="embedapp.note", per_page=4)
    pks = [r["pk"] for r in one["results"] + two["results"]]
    assert pks == [r["pk"] for r in all_["results"]]
    assert len(set(pks)) == 4


def test_a_page_past_the_last_result_is_empty_not_an_error(client, notes):
    response, body = get(client, q="password", model="embedapp.note", per_page=5, page=3)
    assert response.status_code == 200
    assert body["results"] == [] and body["has_next"] is False


def test_a_whitelisted_filter_narrows_the_results(client, notes):
    _, body = get(client, q="password", model="embedapp.note", category="orders")
    assert {r["title"] for r in body["results"]} == {
        "Shipping times to Europe",
        "Return a damaged parcel",
    }
    response = client.get(API, {"q": "password", "category": ["orders", "security"]})
    titles = {r["title"] for r in json.loads(response.content)["results"]}
    assert len(titles) == 3 and "Return a damaged parcel" in titles


def test_without_a_model_every_registered_model_is_searched(client, notes):
    article = Article.objects.create(title="Resetting a password", body="reset the password")
    _, body = get(client, q="reset password", per_page=20)
    models = {r["model"] for r in body["results"]}
    assert {"embedapp.note", "embedapp.article"} <= models
    scores = [r["score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)
    assert any(r["pk"] == article.pk and r["model"] == "embedapp.article" for r in body["results"])


def test_a_filter_only_some_models_have_limits_the_search_to_them(client, notes):
    Article.objects.create(title="Resetting a password", body="reset the password")
    _, body = get(client, q="reset password", category="account")
    assert {r["model"] for r in body["results"]} == {"embedapp.note"}


def test_html_in_titles_is_plain_json_text_and_escaped_in_snippets(client, notes):
    _, body = get(client, q="script password trick", model="embedapp.note", category="security")
    (result,) = body["results"]
    assert result["title"] == "<script>alert(1)</script> password trick"
    assert "<script>" not in result["snippet"]
    assert "&lt;<mark>script</mark>&gt;alert(1)&lt;/<mark>script</mark>&gt;" in result["snippet"]


def test_a_nan_score_is_null_never_nan(client):
    # An empty text embeds to a zero vector, whose cosine distance to anything is NaN.
    Note.objects.create(title="", body="", category="account")
    response = client.get(API, {"q": "password", "model": "embedapp.note"})
    assert response.status_code == 200
    assert b"NaN" not in response.content and b"Infinity" not in response.content
    scores = [r["score"] for r in json.loads(response.content)["results"]]
    assert scores == [None]


@pytest.mark.parametrize(
    "query_string, message",
    [
        ("", "Type something to search for."),
        ("q=", "Type something to search for."),
        ("q=%20%20%09%20", "Type something to search for."),
        ("q=" + "a" * 10_240, "The search text is too long: at most 500 characters, not 10240."),
        ("q=pass%00word", "The request contains a NUL character."),
        ("q=x&category=a%00", "The request contains a NUL character."),
        ("q=caf%C3", "The request is not valid UTF-8."),
        ("q=%FF%FE", "The request is not valid UTF-8."),
        ("q=x&page=0", "page must be 1 or more."),
        ("q=x&page=-3", "page must be 1 or more."),
        ("q=x&page=two", "page must be a whole number."),
        ("q=x&page=1e3", "page must be a whole number."),
        ("q=x&page=" + "9" * 5000, "page must be a whole number."),
        ("q=x&page=101", "page must be at most 100 with 10 results per page."),
        ("q=x&per_page=0", "per_page must be 1 or more."),
        ("q=x&per_page=101", "per_page must be at most 100."),
        ("q=x&per_page=ten", "per_page must be a whole number."),
        ("q=x&model=nope.nothing", "Unknown model nope.nothing"),
        ("q=x&model=auth.user", "Unknown model auth.user"),
        ("q=x&model=embedapp", "Unknown model embedapp"),
        ("q=x&password__startswith=a", "Unknown parameter 'password__startswith'"),
        ("q=x&ordering=password", "Unknown parameter 'ordering'"),
        ("q=x&_connector=OR", "Unknown parameter '_connector'"),
        ("q=x&category__startswith=a", "Unknown parameter 'category__startswith'"),
        ("q=x&model=embedapp.article&category=a", "No model here can be filtered on 'category'."),
        ("q=x&category=" + "c" * 30, "is not a valid value for 'category'."),
    ],
)
def test_bad_input_is_a_400_with_a_message(client, notes, query_string, message):
    assert message in error_of(client, query_string)


def test_unknown_parameter_messages_list_what_is_accepted(client):
    error = error_of(client, "q=x&password__startswith=a")
    assert error == (
        "Unknown parameter 'password__startswith': this search accepts q, model, page, "
        "per_page, mode, category."
    )


def test_more_than_a_thousand_parameters_is_a_400_with_a_message(client):
    query_string = "q=x&" + "&".join(f"p{i}=1" for i in range(1001))
    assert error_of(client, query_string) == (
        "Too many parameters: a search takes a few, not thousands."
    )


def test_only_get_is_allowed(client):
    assert client.post(API, {"q": "x"}).status_code == 405


@override_settings(VECTORSEARCH={"SEARCH_MAX_PER_PAGE": 5, "SEARCH_MAX_QUERY_LENGTH": 10})
def test_limits_come_from_the_settings(client):
    assert error_of(client, "q=x&per_page=6") == "per_page must be at most 5."
    assert "at most 10 characters" in error_of(client, "q=abcdefghijk")


def test_the_search_runs_under_the_statement_timeout(client, notes):
    with CaptureQueriesContext(connection) as queries:
        response = client.get(API, {"q": "password", "model": "embedapp.note"})
    assert response.status_code == 200
    sql = [q["sql"] for q in queries.captured_queries]
    timeout = next(i for i, s in enumerate(sql) if "statement_timeout" in s)
    assert "'3000'" in sql[timeout] and ", true)" in sql[timeout]  # transaction-local
    search = next(i for i, s in enumerate(sql) if "vectorsearch_embedding" in s)
    assert timeout < search
    # Nothing outlives the request: the connection is back to the server's default.
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone()[0] == "0"


def test_an_unfiltered_search_walks_the_hnsw_index(db):
    # With every row allowed, the nearest rows come from the index, not from ranking them all:
    # the search page's unfiltered searches are most of its load.
    Note.objects.bulk_create(
        Note(title=f"note {i} about topic {i % 37}", body=f"body {i * 7919 % 1000}")
        for i in range(2000)
    )
    call_command("vectorsearch_backfill", "embedapp.Note", verbosity=0)
    call_command("vectorsearch_index", "embedapp.Note", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE vectorsearch_embedding")
        cursor.execute("ANALYZE embedapp_note")
    # explain() shows the plan as it runs, with its settings: at the default ef_search (200) a
    # 2,000-row table is cheaper to sort, so ask for pgvector's own 40.
    plan = vectorsearch.search(
        Note.objects.all(), "topic 12", k=10, ef_search=40, mode="semantic"
    ).explain()
    assert generic_index_name(registry.get(Note)) in plan


@pytest.mark.parametrize("q", ["!!!", "-", "\u200b"])
def test_a_query_with_nothing_to_search_by_is_a_400(client, notes, q):
    response = client.get(API, {"q": q})
    assert response.status_code == 400
    assert json.loads(response.content)["error"] == (
        "There is nothing in that text to search by: it has no words the embedder knows."
    )


def test_the_deepest_page_is_a_page_without_next(client, notes, settings):
    for i in range(30):
        Note.objects.create(title=f"password note {i}", category="account")  # embedded on save
    settings.VECTORSEARCH = {"MAX_K": 20, "SEARCH_MAX_RESULTS": 20}
    response = client.get(API, {"q": "password note", "per_page": 10, "page": 2})
    assert response.status_code == 200
    body = json.loads(response.content)
    assert len(body["results"]) == 10
    assert body["has_next"] is False


@pytest.mark.parametrize("method", ["post", "put", "delete", "patch"])
def test_other_methods_get_a_json_405(method):
    from django.test import Client

    response = getattr(Client(enforce_csrf_checks=True), method)(API)
    assert response.status_code == 405
    assert json.loads(response.content) == {
        "error": f"{method.upper()} is not allowed here; search with GET."
    }
    assert "GET" in response["Allow"]


def test_a_replacement_character_typed_in_q_is_searched_not_refused(client, notes):
    # Django decodes query strings with errors="replace": a literal U+FFFD looked like a bad byte.
    response = client.get(API, {"q": "password \ufffd"})
    assert response.status_code == 200, response.content
    assert json.loads(response.content)["results"]
    assert error_of(client, "q=password%20%EF%BF%BD%FF") == "The request is not valid UTF-8."


def test_options_is_a_json_405_saying_what_is_allowed(client):
    response = client.options(API)
    assert response.status_code == 405
    assert response["Content-Type"] == "application/json"
    assert json.loads(response.content) == {
        "error": "OPTIONS is not allowed here; search with GET."
    }
    assert response["Allow"] == "GET, HEAD"


class SlowAPI(VectorSearchAPIView):
    queryset = Note.objects.extra(where=["pg_sleep(0.3) IS NOT NULL"])


class BrokenAPI(VectorSearchAPIView):
    queryset = Note.objects.extra(where=["1 / (id - id) = 1"])


class FailingEmbedderAPI(VectorSearchAPIView):
    def search_registration(self, *args):
        raise EmbeddingError("the embedding server is down")


class BuggyAPI(VectorSearchAPIView):
    def get_title(self, obj):
        raise RuntimeError("a bug in a site's hook")


@pytest.mark.parametrize(
    "view, query_string, status",
    [
        (VectorSearchAPIView, "q=x&ordering=a", 400),
        (VectorSearchAPIView, "q=caf%C3", 400),
        (VectorSearchAPIView, "&".join(f"p{i}=1" for i in range(1001)), 400),
        (SlowAPI, "q=password", 503),
        (BrokenAPI, "q=password", 503),
        (FailingEmbedderAPI, "q=password", 503),
        (BuggyAPI, "q=password", 500),
    ],
)
@override_settings(VECTORSEARCH={"SEARCH_STATEMENT_TIMEOUT_MS": 100})
def test_every_error_answer_of_the_api_is_json(notes, view, query_string, status):
    response = view.as_view()(RequestFactory().get(f"{API}?{query_string}"))
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    (message,) = json.loads(response.content).values()
    assert message and "division" not in message and "bug" not in message


def test_an_unexpected_failure_shows_djangos_debug_page_with_debug_on(notes, settings):
    settings.DEBUG = True
    with pytest.raises(RuntimeError):
        BuggyAPI.as_view()(RequestFactory().get(API, {"q": "password"}))


def test_an_unexpected_failure_reaches_djangos_error_reporting(notes):
    from django.core.signals import got_request_exception

    reported = []

    def receiver(sender, request, **kwargs):
        reported.append(request.path)

    got_request_exception.connect(receiver)
    try:
        BuggyAPI.as_view()(RequestFactory().get(API, {"q": "password"}))
    finally:
        got_request_exception.disconnect(receiver)
    assert reported == [API]


@pytest.mark.parametrize("mode", ["hybrid", "semantic", "keyword"])
def test_every_mode_answers_with_results(client, notes, mode):
    response, body = get(client, q="password reset", model="embedapp.note", mode=mode)
    assert response.status_code == 200
    assert body["results"][0]["title"] in (
        "How to reset your password",
        "Password reset email never arrived",
    )


def test_mode_hybrid_is_the_default_and_an_unknown_mode_is_refused(client, notes):
    _, default = get(client, q="password", model="embedapp.note")
    _, hybrid = get(client, q="password", model="embedapp.note", mode="hybrid")
    assert default["results"] == hybrid["results"] and default["results"]
    assert error_of(client, "q=password&mode=fuzzy") == (
        "mode must be one of semantic, hybrid or keyword, not fuzzy."
    )


class KeywordByDefault(VectorSearchAPIView):
    mode = "keyword"
    model = Note


def test_the_views_mode_attribute_is_the_default_mode(notes):
    response = KeywordByDefault.as_view()(RequestFactory().get(API, {"q": "shipping"}))
    assert response.status_code == 200
    titles = [r["title"] for r in json.loads(response.content)["results"]]
    assert titles == ["Shipping times to Europe"]


@pytest.mark.parametrize("q", ["\U0001f642\U0001f642", "?!", "..."])
def test_a_query_without_a_word_is_a_clear_answer_in_every_mode(client, notes, q):
    # A byte-level embedder makes a vector of anything: emoji alone ranked rows on noise.
    for mode in ("hybrid", "semantic"):
        assert error_of(client, f"q={q}&mode={mode}".replace("?", "%3F")) == (
            "There is nothing in that text to search by: it has no words the embedder knows."
        )
    response, body = get(client, q=q, mode="keyword")
    assert response.status_code == 200 and body["results"] == []

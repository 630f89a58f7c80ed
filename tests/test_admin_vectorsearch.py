"""The admin integration (vectorsearch.admin), through Django's admin test patterns.

The ModelAdmins are in tests/adminapp/admin.py: ArticleAdmin (own vector column), NoteAdmin
(generic table, with row restrictions in get_queryset and has_view_permission) and TagAdmin
(generic, no search_fields).
"""

import importlib
import json
import re
import shlex
import time
from io import StringIO

import numpy as np
import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission, User
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.db import connection
from django.test import override_settings
from django.utils.module_loading import import_string

import vectorsearch
from tests.embedapp.models import Article, Note, Tag
from tests.testapp.models import Document
from vectorsearch.admin import VectorSearchAdminMixin, render_vector, sparkline_points
from vectorsearch.models import Embedding
from vectorsearch.registry import registry

pytestmark = pytest.mark.django_db

UNREACHABLE_EMBEDDER = {
    "default": {
        "BACKEND": "vectorsearch.embedders.OpenAICompatibleEmbedder",
        "OPTIONS": {
            "base_url": "http://127.0.0.1:9/v1",  # the discard port: connection refused
            "model": "down",
            "dimensions": 256,
            "max_retries": 0,
            "timeout": 2.0,
        },
    },
    "small": {"BACKEND": "vectorsearch.embedders.HashingEmbedder", "OPTIONS": {"dimensions": 32}},
}


def _staff(username, *perms):
    user = User.objects.create_user(username, password="password", is_staff=True)
    for codename in perms:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return user


@pytest.fixture
def articles():
    return [
        Article.objects.create(title="Cats purr softly", body="A cat purrs when it is content."),
        Article.objects.create(title="Dogs bark loudly", body="A dog barks at the postman."),
        Article.objects.create(title="Stock market news", body="Shares fell on Monday."),
        Article.objects.create(title="Kittens and cats", body="Young cats purr and play."),
    ]


@pytest.fixture
def notes():
    return {
        "public": Note.objects.create(title="Cats purr", body="cats purr", category="general"),
        "other": Note.objects.create(title="Cats purring", body="a cat purring", category="pets"),
        "secret": Note.objects.create(title="Cats purr too", body="cats purr", category="secret"),
        "private": Note.objects.create(
            title="Private cats purr", body="cats purr", category="general"
        ),
        "far": Note.objects.create(title="Tax law", body="income tax rules", category="general"),
    }


def _result_titles(html):
    """The changelist's rows, in order: the text of each row's first link."""
    return re.findall(r'<th class="field-\w+"><a href="[^"]+">([^<]+)</a>', html)


def _similar_section(html):
    match = re.search(r'<section[^>]*id="vectorsearch-similar".*?</section>', html, re.S)
    assert match, "no Similar items panel"
    return match.group(0)


# -- the compact vector display ------------------------------------------------------------------


def test_change_form_shows_the_vector_compactly_not_as_a_text_box(admin_client, articles):
    page = admin_client.get(f"/admin/embedapp/article/{articles[0].pk}/change/").content.decode()
    assert 'name="embedding"' not in page  # pgvector's text box is gone
    assert "<dt>Dimensions</dt><dd>256</dd>" in page
    assert "<dt>L2 norm</dt><dd>1.0000</dd>" in page  # the hashing embedder normalizes
    assert "<dt>State</dt><dd>current</dd>" in page
    assert re.search(r'<polyline class="vectorsearch-sparkline-line" points="[\d., ]+"', page)
    assert "vectorsearch/admin.css" in page
    # 256 numbers would be ~2.5 kB of digits; the display shows five of them.
    first = np.asarray(articles[0].embedding)[:5]
    assert f"[{first[0]:.4g}, " in page


def test_generic_registration_shows_the_embedding_tables_vector(admin_client, notes):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        response = admin_client.get(f"/admin/embedapp/note/{notes['public'].pk}/change/")
    page = response.content.decode()
    assert "<dt>Dimensions</dt><dd>256</dd>" in page
    # The display and the similar items share one read of the stored vector.
    reads = [q for q in captured if q["sql"].startswith('SELECT "vectorsearch_embedding"."vector"')]
    assert len(reads) == 1
    assert "<dt>Embedder</dt><dd><code>hashing:" in page


def test_stale_vector_is_shown_as_stale(admin_client, articles):
    Article.objects.filter(pk=articles[0].pk).update(title="Edited without a save signal")
    page = admin_client.get(f"/admin/embedapp/article/{articles[0].pk}/change/").content.decode()
    assert "<dt>State</dt><dd>stale: the text or the embedder changed since</dd>" in page


def test_saving_the_form_keeps_the_vector_and_reembeds_the_new_text(admin_client, articles):
    article = articles[0]
    before = np.asarray(article.embedding)
    response = admin_client.post(
        f"/admin/embedapp/article/{article.pk}/change/",
        {"title": "Cats sleep all day", "body": article.body, "embedding": "[1, 2, 3]"},
    )
    assert response.status_code == 302
    article.refresh_from_db()
    after = np.asarray(article.embedding)
    assert after.shape == (256,)  # the posted text box value was ignored
    assert not np.allclose(before, after)  # the save embedded the new title


def test_add_form_says_the_vector_comes_on_save(admin_client):
    page = admin_client.get("/admin/embedapp/article/add/").content.decode()
    assert "No vector yet: it is made from the text once saved." in page
    assert 'name="embedding"' not in page


def test_list_display_summary(admin_client, articles):
    page = admin_client.get("/admin/embedapp/article/").content.decode()
    assert page.count('<span class="vectorsearch-vector-compact">256 dims · ‖v‖ 1.000') == 4


def test_list_summary_of_a_generic_registration_reads_vectors_in_one_query(admin_client, notes):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def embedding_queries():
        with CaptureQueriesContext(connection) as captured:
            html = admin_client.get("/admin/embedapp/note/").content.decode()
        reads = [q for q in captured if 'FROM "vectorsearch_embedding"' in q["sql"]]
        return html, len(reads)

    html, before = embedding_queries()
    assert html.count("256 dims · ‖v‖ 1.000") == 5
    for i in range(5):
        Note.objects.create(title=f"more {i}", body="more")
    html, after = embedding_queries()
    assert html.count("256 dims · ‖v‖ 1.000") == 10
    assert before == after == 1


def test_render_vector_handles_missing_nan_and_long_vectors():
    assert "No vector yet." in render_vector(None)
    html = render_vector([1.0, float("nan"), 2.0])
    assert "<dd>3</dd>" in html and "<polyline" not in html  # no sparkline of NaN
    points = sparkline_points(np.linspace(-1, 1, 1536)).split()
    assert len(points) == 80
    xs, ys = zip(*(map(float, p.split(",")) for p in points), strict=True)
    assert min(xs) == 0 and max(xs) == 160 and min(ys) >= 0 and max(ys) <= 32
    assert sparkline_points([]) == ""


# -- search by meaning ---------------------------------------------------------------------------


def test_semantic_search_ranks_by_similarity(admin_client, articles):
    response = admin_client.get("/admin/embedapp/article/", {"q": "cat purring", "semantic": "1"})
    assert response.status_code == 200
    html = response.content.decode()
    titles = _result_titles(html)
    assert titles[0] == "Cats purr softly"
    assert set(titles[:2]) == {"Cats purr softly", "Kittens and cats"}
    assert titles[-1] in ("Stock market news", "Dogs bark loudly")
    assert "column-vectorsearch_score" in html
    scores = [float(s) for s in re.findall(r'<td class="field-vectorsearch_score">([\d.]+)', html)]
    assert scores == sorted(scores, reverse=True) and len(scores) == 4
    assert 'id="vectorsearch-semantic" checked' in html


def test_a_column_header_sorts_the_ranked_results(admin_client, articles):
    html = admin_client.get(
        "/admin/embedapp/article/", {"q": "cat purring", "semantic": "1", "o": "1"}
    ).content.decode()
    titles = _result_titles(html)
    assert titles == sorted(titles) and len(titles) == 4  # by title, not by similarity


def test_ordinary_search_is_unchanged_when_the_toggle_is_off(admin_client, articles):
    html = admin_client.get("/admin/embedapp/article/", {"q": "cat purring"}).content.decode()
    assert _result_titles(html) == []  # no title contains "cat purring"
    assert "column-vectorsearch_score" not in html
    html = admin_client.get("/admin/embedapp/article/", {"q": "cats"}).content.decode()
    assert sorted(_result_titles(html)) == ["Cats purr softly", "Kittens and cats"]
    assert 'id="vectorsearch-semantic" checked' not in html


def test_semantic_search_keeps_the_changelist_filters(admin_client, notes):
    html = admin_client.get(
        "/admin/embedapp/note/", {"q": "cats purr", "semantic": "1", "category": "general"}
    ).content.decode()
    titles = _result_titles(html)
    # Only category "general" ("Cats purring" is "pets"), nearest first.
    assert sorted(titles[:2]) == ["Cats purr", "Private cats purr"] and titles[2:] == ["Tax law"]
    # The filter links keep the toggle and the text.
    assert "semantic=1" in html and "q=cats+purr" in html


def test_semantic_search_with_facet_counts(admin_client, notes):
    # Facet counts rerun the search once per filter.
    html = admin_client.get(
        "/admin/embedapp/note/", {"q": "cats purr", "semantic": "1", "_facets": "1"}
    ).content.decode()
    assert _result_titles(html)[0] in ("Cats purr", "Cats purr too", "Private cats purr")
    assert re.search(r"pets\s*\(1\)", html)
    assert re.search(r"general\s*\(3\)", html)


def test_semantic_search_respects_get_queryset(client, notes):
    client.force_login(_staff("viewer", "view_note"))
    titles = _result_titles(
        client.get("/admin/embedapp/note/", {"q": "cats purr", "semantic": "1"}).content.decode()
    )
    assert "Cats purr too" not in titles  # category "secret" is outside the admin's queryset
    assert titles[0] == "Cats purr"


def test_model_without_search_fields_searches_by_meaning(admin_client):
    Tag.objects.create(slug="felines", label="cats and kittens")
    Tag.objects.create(slug="finance", label="stock market")
    html = admin_client.get("/admin/embedapp/tag/", {"q": "kittens", "semantic": "1"}).content
    html = html.decode()
    assert 'type="hidden" name="semantic" value="1"' in html
    assert 'id="searchbar"' in html
    assert _result_titles(html)[0] == "felines"


@pytest.mark.parametrize(
    ("q", "message"),
    [
        ("x" * 10_000, "search by meaning takes at most 2000"),
        # Django's search form refuses NUL itself, before any search runs.
        ("cats\x00", "Null characters are not allowed."),
    ],
)
def test_bad_semantic_queries_get_a_message_not_a_500(admin_client, articles, q, message):
    response = admin_client.get("/admin/embedapp/article/", {"q": q, "semantic": "1"})
    assert response.status_code == 200
    html = response.content.decode()
    assert message in html
    assert "column-vectorsearch_score" not in html  # nothing was ranked


@pytest.mark.parametrize("semantic", ["1", ""])
def test_a_nul_in_the_search_lists_no_rows(admin_client, articles, semantic):
    # D6: the error was shown above all the model's rows (Django then searches for "").
    response = admin_client.get("/admin/embedapp/article/", {"q": "cats\x00", "semantic": semantic})
    assert response.status_code == 200
    html = response.content.decode()
    assert "Null characters are not allowed." in html
    assert _result_titles(html) == []


def test_search_by_meaning_runs_under_the_statement_timeout(admin_client, articles):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        response = admin_client.get("/admin/embedapp/article/", {"q": "cats", "semantic": "1"})
    assert response.status_code == 200
    sql = [q["sql"] for q in captured.captured_queries]
    timeout = next(i for i, q in enumerate(sql) if "set_config('statement_timeout'" in q)
    ranked = [i for i, q in enumerate(sql) if "<=>" in q]
    assert ranked and min(ranked) > timeout


@override_settings(VECTORSEARCH={"SEARCH_STATEMENT_TIMEOUT_MS": 100})
def test_a_search_by_meaning_past_the_timeout_is_a_503(admin_user, articles, rf):
    class SlowArticleAdmin(type(admin.site._registry[Article])):
        def get_queryset(self, request):
            return super().get_queryset(request).extra(where=["pg_sleep(0.3) IS NOT NULL"])

    request = rf.get("/admin/embedapp/article/", {"q": "cats", "semantic": "1"})
    request.user = admin_user
    request.session = {}
    request._messages = type("Messages", (), {"add": lambda *a, **k: None})()
    response = SlowArticleAdmin(Article, admin.site).changelist_view(request)
    assert response.status_code == 503
    assert response.content.decode() == "The search took too long; try fewer words or a filter."


def test_blank_semantic_query_lists_everything(admin_client, articles):
    response = admin_client.get("/admin/embedapp/article/", {"q": "   ", "semantic": "1"})
    assert response.status_code == 200
    assert len(_result_titles(response.content.decode())) == 4


def test_unavailable_embedder_is_a_message(admin_client, articles):
    with override_settings(VECTORSEARCH_EMBEDDERS=UNREACHABLE_EMBEDDER):
        response = admin_client.get("/admin/embedapp/article/", {"q": "cats", "semantic": "1"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "Search by meaning failed:" in html
    assert html.count("Search by meaning failed:") == 1


def test_semantic_parameter_is_not_taken_for_a_field_lookup(admin_client, articles):
    # Without the ChangeList's help, ?semantic=1 is an unknown lookup: a redirect to ?e=1.
    response = admin_client.get("/admin/embedapp/article/", {"semantic": "1"})
    assert response.status_code == 200
    assert len(_result_titles(response.content.decode())) == 4


# -- similar items -----------------------------------------------------------------------------


def test_similar_items_panel_links_ranked_objects(admin_client, articles):
    html = admin_client.get(f"/admin/embedapp/article/{articles[0].pk}/change/").content.decode()
    panel = _similar_section(html)
    links = re.findall(r'<a href="/admin/embedapp/article/(\d+)/change/">([^<]+)</a>', panel)
    assert links[0][1] == "Kittens and cats"
    assert str(articles[0].pk) not in [pk for pk, _ in links]  # not itself
    assert len(links) == 3
    scores = [float(s) for s in re.findall(r"</span>(-?[\d.]+)</span>", panel)]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True)


def test_similar_items_lists_only_what_the_viewer_may_view(admin_client, client, notes):
    url = f"/admin/embedapp/note/{notes['public'].pk}/change/"
    everything = _similar_section(admin_client.get(url).content.decode())
    assert "Cats purr too" in everything and "Private cats purr" in everything

    client.force_login(_staff("viewer", "view_note"))  # view only
    response = client.get(url)
    assert response.status_code == 200
    html = response.content.decode()
    assert 'name="title"' not in html  # a read-only page
    panel = _similar_section(html)
    assert "Cats purring" in panel
    assert "Cats purr too" not in panel  # excluded by the admin's get_queryset
    assert "Private cats purr" not in panel  # refused by has_view_permission(request, obj)


def test_no_permission_on_the_model_is_forbidden(client, articles):
    client.force_login(_staff("notes-only", "view_note"))
    assert client.get(f"/admin/embedapp/article/{articles[0].pk}/change/").status_code == 403
    assert client.get("/admin/embedapp/article/", {"q": "x", "semantic": "1"}).status_code == 403


def test_similar_items_with_text_primary_keys(admin_client):
    Tag.objects.create(slug="cats", label="cats and kittens")
    Tag.objects.create(slug="kittens", label="kittens and cats")
    Tag.objects.create(slug="bonds", label="bond yields")
    html = admin_client.get("/admin/embedapp/tag/cats/change/").content.decode()
    links = re.findall(r'<a href="/admin/embedapp/tag/([^/]+)/change/">', _similar_section(html))
    assert links == ["kittens", "bonds"]
    assert "<dt>Dimensions</dt><dd>32</dd>" in html  # the "small" embedder


def test_similar_items_without_a_vector_says_so(admin_client, notes):
    Embedding.objects.filter(object_id=str(notes["public"].pk)).delete()
    html = admin_client.get(f"/admin/embedapp/note/{notes['public'].pk}/change/").content.decode()
    assert "This object has no vector yet" in _similar_section(html)


def test_similar_items_escape_titles(admin_client):
    first = Article.objects.create(title="cats purr", body="cats")
    Article.objects.create(title="<script>alert(1)</script> cats purr", body="cats")
    html = admin_client.get(f"/admin/embedapp/article/{first.pk}/change/").content.decode()
    panel = _similar_section(html)
    assert "<script>alert(1)</script>" not in panel
    assert "&lt;script&gt;alert(1)&lt;/script&gt; cats purr" in panel


# -- re-embed selected -----------------------------------------------------------------------------


def _action(client, url, action, pks):
    return client.post(
        url, {"action": action, "_selected_action": [str(pk) for pk in pks]}, follow=True
    )


def test_reembed_selected_articles(admin_client, articles):
    Article.objects.filter(pk__in=[a.pk for a in articles[:2]]).update(embedding=None)
    response = _action(
        admin_client,
        "/admin/embedapp/article/",
        "vectorsearch_reembed",
        [a.pk for a in articles[:2]],
    )
    assert "Re-embedded 2 articles." in response.content.decode()
    assert Article.objects.filter(embedding__isnull=True).count() == 0


def test_reembed_selected_notes_in_the_generic_table(admin_client, notes):
    Embedding.objects.filter(object_id=str(notes["far"].pk)).delete()
    response = _action(
        admin_client, "/admin/embedapp/note/", "vectorsearch_reembed", [notes["far"].pk]
    )
    assert "Re-embedded 1 note." in response.content.decode()
    assert Embedding.objects.filter(object_id=str(notes["far"].pk), vector__isnull=False).exists()


def test_reembed_reports_failures(admin_client, articles):
    with override_settings(VECTORSEARCH_EMBEDDERS=UNREACHABLE_EMBEDDER):
        response = _action(
            admin_client, "/admin/embedapp/article/", "vectorsearch_reembed", [articles[0].pk]
        )
    html = response.content.decode()
    assert "1 object could not be embedded: pk=" in html
    assert "Re-embedded" not in html


def test_reembed_action_is_offered_by_name(admin_client, articles):
    html = admin_client.get("/admin/embedapp/article/").content.decode()
    assert '<option value="vectorsearch_reembed">Re-embed selected articles</option>' in html


def test_view_only_user_cannot_reembed(client, notes):
    client.force_login(_staff("viewer", "view_note"))
    html = client.get("/admin/embedapp/note/").content.decode()
    assert "vectorsearch_reembed" not in html
    Embedding.objects.filter(object_id=str(notes["far"].pk)).delete()
    _action(client, "/admin/embedapp/note/", "vectorsearch_reembed", [notes["far"].pk])
    assert not Embedding.objects.filter(object_id=str(notes["far"].pk)).exists()


def _select_all(client, url, action):
    """The action over every object of the changelist ("Select all N"), as the admin posts it."""
    return client.post(
        url,
        {"action": action, "select_across": "1", "index": "0", "_selected_action": ["0"]},
        follow=True,
    )


def _spoil(notes):
    """Zero the notes' stored vectors, leaving identity and hash: "current" by the bookkeeping,
    so only a re-embed of every row (not a backfill of missing and stale ones) repairs them."""
    Embedding.objects.filter(object_id__in=[str(n.pk) for n in notes]).update(vector=[0.0] * 256)


def _spoiled():
    """The ids of the notes whose vector is still zero."""
    rows = Embedding.objects.filter(content_type=ContentType.objects.get_for_model(Note))
    return sorted(
        int(oid) for oid, vector in rows.values_list("object_id", "vector") if not any(vector)
    )


class NeverCalledEmbedder(vectorsearch.embedders.HashingEmbedder):
    """Proves the request embedded nothing: any call fails the test."""

    def embed_documents(self, texts):
        raise AssertionError(f"embedded {len(texts)} text(s) in the request")


class SleepyEmbedder(vectorsearch.embedders.HashingEmbedder):
    """Half a second per batch, so a time limit of 1 s stops a re-embed after two batches."""

    def embed_documents(self, texts):
        time.sleep(0.5)
        return super().embed_documents(texts)


def _embedders(backend):
    return {"default": {"BACKEND": backend, "OPTIONS": {"dimensions": 256}}}


def _messages(response):
    return [str(m) for m in response.context["messages"]]


def _tasks_framework():
    """The framework vectorsearch.tasks uses: Django's own (6.0+), else the django-tasks package."""
    try:
        return importlib.import_module("django.tasks")
    except ImportError:
        return pytest.importorskip("django_tasks")


@pytest.fixture
def twelve_notes():
    return [Note.objects.create(title=f"note {i}", body="cats purr") for i in range(12)]


def test_reembed_above_the_limit_without_a_task_backend_refuses_with_the_command(
    admin_client, twelve_notes
):
    _spoil(twelve_notes)
    # django-tasks' default backend runs tasks at once, in the request: not a background.
    with override_settings(
        VECTORSEARCH={"ADMIN_REEMBED_MAX_ROWS": 5},
        VECTORSEARCH_EMBEDDERS=_embedders("tests.test_admin_vectorsearch.NeverCalledEmbedder"),
    ):
        response = _select_all(admin_client, "/admin/embedapp/note/", "vectorsearch_reembed")
    (message,) = _messages(response)
    assert message.startswith("Nothing was re-embedded: 12 notes are more than the admin")
    assert "(VECTORSEARCH['ADMIN_REEMBED_MAX_ROWS'] = 5)" in message
    command = "python manage.py vectorsearch_backfill embedapp.Note@default --all-rows"
    assert f"Run instead: {command} " in message
    assert _spoiled() == [n.pk for n in twelve_notes]
    # The command it gives does the work.
    call_command(*shlex.split(command)[2:], stdout=StringIO())
    assert _spoiled() == []


def test_reembed_above_the_limit_queues_background_tasks_that_do_the_work(
    admin_client, twelve_notes, django_capture_on_commit_callbacks
):
    framework = _tasks_framework()
    task_backends = framework.task_backends
    _spoil(twelve_notes)
    dummy = {"default": {"BACKEND": f"{framework.__name__}.backends.dummy.DummyBackend"}}
    with override_settings(
        VECTORSEARCH={"ADMIN_REEMBED_MAX_ROWS": 5},
        TASKS=dummy,
        VECTORSEARCH_EMBEDDERS=_embedders("tests.test_admin_vectorsearch.NeverCalledEmbedder"),
    ):
        with django_capture_on_commit_callbacks(execute=True):  # enqueued on commit
            response = _select_all(admin_client, "/admin/embedapp/note/", "vectorsearch_reembed")
        (message,) = _messages(response)
        queued = list(task_backends["default"].results)
    assert message.startswith("12 notes are more than the admin re-embeds during a request")
    assert "queued as 3 background task(s) on the task backend 'default'" in message
    assert _spoiled() == [n.pk for n in twelve_notes]  # nothing was embedded in the request
    # A worker runs them: found by module path, arguments through JSON.
    ids = []
    for result in queued:
        task = import_string(result.task.module_path)
        args, kwargs = json.loads(json.dumps([result.args, result.kwargs]))
        assert task.call(*args, **kwargs) == len(args[2])
        ids.extend(args[2])
    assert sorted(ids) == sorted(str(n.pk) for n in twelve_notes)
    assert _spoiled() == []


def test_reembed_too_large_to_queue_is_refused_with_the_command(admin_client):
    framework = _tasks_framework()
    Note.objects.bulk_create([Note(title=f"note {i}") for i in range(101)])
    dummy = {"default": {"BACKEND": f"{framework.__name__}.backends.dummy.DummyBackend"}}
    with override_settings(VECTORSEARCH={"ADMIN_REEMBED_MAX_ROWS": 1}, TASKS=dummy):
        response = _select_all(admin_client, "/admin/embedapp/note/", "vectorsearch_reembed")
        assert framework.task_backends["default"].results == []
    (message,) = _messages(response)
    assert message.startswith(
        "Nothing was re-embedded: 101 notes are more than the admin queues as 100 background "
        "tasks of VECTORSEARCH['ADMIN_REEMBED_MAX_ROWS'] = 1. Run instead: python manage.py "
        "vectorsearch_backfill embedapp.Note@default --all-rows"
    )


def test_reembed_below_the_limit_runs_in_the_request_and_reports_partial_failures(admin_client):
    from tests.test_commands import POISON

    with override_settings(VECTORSEARCH_EMBEDDERS=POISON, VECTORSEARCH={"BATCH_SIZE": 2}):
        notes = [Note.objects.create(title=t) for t in ("cats", "poison ivy", "dogs", "owls")]
        response = _action(
            admin_client, "/admin/embedapp/note/", "vectorsearch_reembed", [n.pk for n in notes]
        )
    assert _messages(response) == [
        "Re-embedded 3 notes.",
        f"1 object could not be embedded: pk={notes[1].pk}: ValueError: cannot embed poison",
    ]
    assert Embedding.objects.filter(object_id=str(notes[1].pk)).count() == 0
    assert Embedding.objects.filter(vector__isnull=False).count() == 3


def test_reembed_stopped_by_a_database_error_says_what_was_done_and_what_was_not(
    admin_client, twelve_notes
):
    selected = twelve_notes[:4]
    _spoil(twelve_notes)
    with connection.cursor() as cursor:  # the second batch's write fails in PostgreSQL
        cursor.execute(
            "CREATE FUNCTION pg_temp.refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF NEW.object_id = '{selected[2].pk}' THEN RAISE EXCEPTION 'disk full'; END IF; "
            "RETURN NEW; END $$"
        )
        cursor.execute(
            "CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON vectorsearch_embedding "
            "FOR EACH ROW EXECUTE FUNCTION pg_temp.refuse()"
        )
    with override_settings(VECTORSEARCH={"BATCH_SIZE": 2}):
        response = _action(
            admin_client, "/admin/embedapp/note/", "vectorsearch_reembed", [n.pk for n in selected]
        )
    assert response.status_code == 200
    done, stopped = _messages(response)
    assert done == "Re-embedded 2 notes."
    assert stopped.startswith(
        "The re-embed stopped on a database error (disk full"
    ) and stopped.endswith(
        "2 of the 4 selected notes were not re-embedded. Select them again, or run: "
        "python manage.py vectorsearch_backfill embedapp.Note@default --all-rows"
    )
    assert _spoiled() == [n.pk for n in twelve_notes[2:]]


def test_reembed_stops_at_its_time_limit_and_says_how_far_it_got(admin_client, twelve_notes):
    selected = twelve_notes[:6]
    _spoil(twelve_notes)
    with override_settings(
        VECTORSEARCH={"BATCH_SIZE": 2, "ADMIN_REEMBED_MAX_SECONDS": 1},
        VECTORSEARCH_EMBEDDERS=_embedders("tests.test_admin_vectorsearch.SleepyEmbedder"),
    ):
        response = _action(
            admin_client, "/admin/embedapp/note/", "vectorsearch_reembed", [n.pk for n in selected]
        )
    done, stopped = _messages(response)
    assert done == "Re-embedded 4 notes."
    assert stopped.startswith(
        "Stopped after 1 s (VECTORSEARCH['ADMIN_REEMBED_MAX_SECONDS']) so that the page answers "
        "in time: 2 of the 6 selected notes were not re-embedded."
    )
    assert _spoiled() == [n.pk for n in twelve_notes[4:]]


# -- the Embedding table's admin ----------------------------------------------------------------


def test_embedding_admin_lists_rows_read_only(admin_client, notes, articles):
    html = admin_client.get("/admin/vectorsearch/embedding/").content.decode()
    assert html.count('<td class="field-state">current</td>') == len(notes) + len(articles)
    assert f'<a href="/admin/embedapp/note/{notes["far"].pk}/change/">' in html
    assert "in the model&#x27;s column" in html  # Article's bookkeeping rows: no vector here
    assert admin_client.get("/admin/vectorsearch/embedding/add/").status_code == 403
    # The mixin's templates are not taken for the vectorsearch app's own admin pages.
    assert 'name="semantic"' not in html and "by meaning" not in html.lower()
    assert "delete_selected" not in html


def test_embedding_admin_detail_shows_state_and_vector(admin_client, notes):
    row = Embedding.objects.get(object_id=str(notes["far"].pk))
    Note.objects.filter(pk=notes["far"].pk).update(body="changed behind the sync's back")
    html = admin_client.get(f"/admin/vectorsearch/embedding/{row.pk}/change/").content.decode()
    assert "stale: the text or the embedder changed since" in html
    assert "<dt>Dimensions</dt><dd>256</dd>" in html
    assert 'name="vector"' not in html
    response = admin_client.post(f"/admin/vectorsearch/embedding/{row.pk}/change/", {})
    assert response.status_code == 403


def test_embedding_admin_list_reads_objects_per_model_not_per_row(admin_client, notes, articles):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        html = admin_client.get("/admin/vectorsearch/embedding/").content.decode()
    assert html.count('<td class="field-state">current</td>') == 9
    note_reads = [q for q in captured if 'FROM "embedapp_note"' in q["sql"]]
    article_reads = [q for q in captured if 'FROM "embedapp_article"' in q["sql"]]
    assert len(note_reads) == len(article_reads) == 1


def test_an_id_that_is_no_pk_is_the_only_orphan_of_its_model(admin_client, notes, articles):
    from vectorsearch.models import Embedding

    stray = Embedding.objects.filter(object_id=str(notes["far"].pk)).get()
    stray.pk, stray.object_id = None, "abc"  # cannot be a Note's integer pk
    stray.save()
    html = admin_client.get("/admin/vectorsearch/embedding/").content.decode()
    assert html.count("orphan: the object is gone") == 1
    assert html.count('<td class="field-state">current</td>') == 9  # the other Notes too


def test_embedding_admin_shows_orphans(admin_client, notes):
    Note.objects.filter(pk=notes["far"].pk)._raw_delete(Note.objects.db)
    html = admin_client.get("/admin/vectorsearch/embedding/").content.decode()
    assert "orphan: the object is gone" in html


def test_misconfigured_embedder_never_gives_a_500(admin_client, articles):
    broken = {"default": {"BACKEND": "no.such.Embedder"}, "small": UNREACHABLE_EMBEDDER["small"]}
    with override_settings(VECTORSEARCH_EMBEDDERS=broken):
        change = admin_client.get(f"/admin/embedapp/article/{articles[0].pk}/change/")
        search = admin_client.get("/admin/embedapp/article/", {"q": "cats", "semantic": "1"})
        action = _action(
            admin_client, "/admin/embedapp/article/", "vectorsearch_reembed", [articles[0].pk]
        )
    assert change.status_code == 200
    assert "Could not import embedder backend" in change.content.decode()
    assert "<dt>Dimensions</dt><dd>256</dd>" in change.content.decode()  # what is stored
    assert "Similar items could not be found" in _similar_section(change.content.decode())
    assert search.status_code == 200 and "Search by meaning failed:" in search.content.decode()
    assert action.status_code == 200 and "Could not import embedder" in action.content.decode()


# -- configuration -------------------------------------------------------------------------------


def test_mixin_on_an_unregistered_model_is_a_system_check_error():
    class DocumentAdmin(VectorSearchAdminMixin, admin.ModelAdmin):
        pass

    errors = DocumentAdmin(Document, admin.site).check()
    assert [e.id for e in errors] == ["vectorsearch.E040"]
    assert "testapp.Document is not registered with vectorsearch" in errors[0].msg


def test_options_editable_vector_and_no_similar_panel(admin_client, rf, articles):
    class EditableArticleAdmin(type(admin.site._registry[Article])):
        vectorsearch_readonly_vector = False
        vectorsearch_similar_k = 0
        vectorsearch_reembed_action = False

    model_admin = EditableArticleAdmin(Article, admin.site)
    request = rf.get("/")
    request.user = User.objects.create_superuser("root", password="password")
    assert "embedding" in model_admin.get_form(request, articles[0]).base_fields
    assert "vectorsearch_vector" in model_admin.get_readonly_fields(request, articles[0])
    assert "vectorsearch_reembed" not in model_admin.get_actions(request)
    response = model_admin.change_view(request, str(articles[0].pk))
    assert "vectorsearch_similar" not in response.context_data
    default = admin.site._registry[Article]
    assert "embedding" not in default.get_form(request, articles[0]).base_fields
    assert "vectorsearch_reembed" in default.get_actions(request)


def test_a_sites_own_admin_mixin_after_the_mixin_still_runs(rf, articles):
    # The mixin is made of parts (vector field, search, similar items, re-embed); each must hand
    # on to the next class, here a site's mixin that overrides the same ModelAdmin methods.
    class SiteMixin(admin.ModelAdmin):
        @admin.action(description="Archive")
        def archive(self, request, queryset):
            pass

        def get_actions(self, request):
            actions = super().get_actions(request)
            action = self.get_action("archive")
            actions[action[1]] = action
            return actions

        def get_list_display(self, request):
            return [*super().get_list_display(request), "body"]

        def get_readonly_fields(self, request, obj=None):
            return [*super().get_readonly_fields(request, obj), "title"]

        def render_change_form(self, request, context, *args, **kwargs):
            context["site_note"] = "from the site"
            return super().render_change_form(request, context, *args, **kwargs)

    class SiteArticleAdmin(VectorSearchAdminMixin, SiteMixin):
        list_display = ["title"]
        search_fields = ["title"]

    model_admin = SiteArticleAdmin(Article, admin.site)
    assert model_admin.check() == []
    request = rf.get("/", {"q": "cats", "semantic": "1"})
    request.user = User.objects.create_superuser("root", password="password")
    assert model_admin.get_list_display(request) == ["title", "body", "vectorsearch_score"]
    assert {"vectorsearch_reembed", "archive"} <= set(model_admin.get_actions(request))
    assert model_admin.get_readonly_fields(request, articles[0]) == ["title", "vectorsearch_vector"]
    response = model_admin.change_view(request, str(articles[0].pk))
    assert response.context_data["site_note"] == "from the site"
    similar = response.context_data["vectorsearch_similar"]
    assert similar["error"] is None and similar["items"][0].obj == articles[3]


def test_the_admin_package_keeps_the_names_of_the_module_it_replaced():
    # vectorsearch/admin.py became a package: sites import these names from vectorsearch.admin.
    from vectorsearch import admin as vectorsearch_admin

    names = [
        *vectorsearch_admin.__all__,
        "STATE_LABELS",
        "embedding_state",
        "stored_vector",
        "REEMBED_MAX_TASKS",
        "backfill_command",
    ]
    assert all(hasattr(vectorsearch_admin, name) for name in names)
    assert vectorsearch_admin.SEMANTIC_VAR == "semantic"
    # Importing it (admin.autodiscover() does) registers the Embedding table's admin.
    assert isinstance(admin.site._registry[Embedding], vectorsearch_admin.EmbeddingAdmin)


def test_registered_admins_pass_the_checks():
    for model in (Article, Note, Tag):
        assert model in registry
        assert admin.site._registry[model].check() == []


# -- fieldsets that name the vector field -------------------------------------------------------


@pytest.fixture
def article_admin(monkeypatch):
    """The site's ArticleAdmin, given ``fieldsets`` (instead of its ``fields``) for one test."""
    model_admin = admin.site._registry[Article]

    def with_fieldsets(fieldsets, **options):
        monkeypatch.setattr(type(model_admin), "fields", None)
        monkeypatch.setattr(type(model_admin), "fieldsets", fieldsets)
        for name, value in options.items():
            monkeypatch.setattr(type(model_admin), name, value)
        return model_admin

    return with_fieldsets


def _fieldsets_html(html):
    """{heading or None: the fieldset's HTML} for the change form's fieldsets."""
    found = {}
    for fieldset in re.findall(r"<fieldset.*?</fieldset>", html, re.S):
        heading = re.search(r'<h2[^>]*class="fieldset-heading"[^>]*>([^<]*)</h2>', fieldset)
        found[heading.group(1) if heading else None] = fieldset
    return found


VECTOR_FIELDSETS = [
    (None, {"fields": ["title", "body"]}),
    (
        "Embedding",
        {"fields": ["embedding"], "classes": ["collapse"], "description": "Made on save."},
    ),
]


def test_fieldsets_naming_the_vector_field_show_the_display_in_its_place(
    admin_client, rf, article_admin, articles
):
    model_admin = article_admin(VECTOR_FIELDSETS)
    assert model_admin.check() == []
    request = rf.get("/")
    request.user = User.objects.create_superuser("root", password="password")
    assert model_admin.get_fieldsets(request, articles[0]) == [
        (None, {"fields": ["title", "body"]}),
        (
            "Embedding",
            {
                "fields": ["vectorsearch_vector"],
                "classes": ["collapse"],
                "description": "Made on save.",
            },
        ),
    ]
    assert "embedding" not in model_admin.get_form(request, articles[0]).base_fields

    response = admin_client.get(f"/admin/embedapp/article/{articles[0].pk}/change/")
    assert response.status_code == 200
    page = response.content.decode()
    assert 'name="embedding"' not in page
    assert page.count('class="vectorsearch-vector"') == 1
    fieldsets = _fieldsets_html(page)
    assert list(fieldsets) == [None, "Embedding"]
    assert "field-vectorsearch_vector" not in fieldsets[None]
    assert "field-vectorsearch_vector" in fieldsets["Embedding"]
    assert "<dt>Dimensions</dt><dd>256</dd>" in fieldsets["Embedding"]
    assert "<dt>State</dt><dd>current</dd>" in fieldsets["Embedding"]
    assert "Made on save." in fieldsets["Embedding"]

    add = admin_client.get("/admin/embedapp/article/add/")
    assert add.status_code == 200
    assert (
        "No vector yet: it is made from the text once saved."
        in (_fieldsets_html(add.content.decode())["Embedding"])
    )


def test_a_fieldset_row_naming_the_vector_field_keeps_its_place_in_the_row(
    admin_client, rf, article_admin, articles
):
    model_admin = article_admin([(None, {"fields": [("title", "embedding"), "body"]})])
    assert model_admin.check() == []
    request = rf.get("/")
    request.user = User.objects.create_superuser("root", password="password")
    assert model_admin.get_fieldsets(request, articles[0]) == [
        (None, {"fields": [("title", "vectorsearch_vector"), "body"]})
    ]
    response = admin_client.get(f"/admin/embedapp/article/{articles[0].pk}/change/")
    assert response.status_code == 200
    page = response.content.decode()
    # Django 6.1 adds classes before these ("form-row flex-container form-multiline ...").
    assert 'field-title field-vectorsearch_vector"' in page
    assert page.index("field-vectorsearch_vector") < page.index("field-body")
    assert 'name="embedding"' not in page
    assert "<dt>Dimensions</dt><dd>256</dd>" in page


def test_a_fieldset_naming_the_field_and_the_display_shows_it_once(
    admin_client, article_admin, articles
):
    article_admin([(None, {"fields": ["title", "embedding", "body", "vectorsearch_vector"]})])
    page = admin_client.get(f"/admin/embedapp/article/{articles[0].pk}/change/").content.decode()
    assert page.count('class="vectorsearch-vector"') == 1
    assert page.index("field-vectorsearch_vector") < page.index("field-body")  # the first place


def test_saving_a_form_with_fieldsets_keeps_the_vector(admin_client, article_admin, articles):
    article_admin(VECTOR_FIELDSETS)
    article = articles[0]
    url = f"/admin/embedapp/article/{article.pk}/change/"
    before = np.asarray(article.embedding)
    # A posted "embedding" (3 numbers for a 256-dimension field) is not even validated.
    response = admin_client.post(
        url, {"title": article.title, "body": article.body, "embedding": "[1, 2, 3]"}
    )
    assert response.status_code == 302
    article.refresh_from_db()
    np.testing.assert_array_equal(np.asarray(article.embedding), before)
    # A new text is embedded by the save, not taken from the form.
    response = admin_client.post(url, {"title": "Cats sleep all day", "body": article.body})
    assert response.status_code == 302
    article.refresh_from_db()
    expected = vectorsearch.embedders["default"].embed([f"Cats sleep all day\n\n{article.body}"])
    np.testing.assert_allclose(np.asarray(article.embedding), expected[0], rtol=1e-6)


def test_an_editable_vector_named_in_fieldsets_still_shows_the_display(
    admin_client, article_admin, articles
):
    article_admin(VECTOR_FIELDSETS, vectorsearch_readonly_vector=False)
    response = admin_client.get(f"/admin/embedapp/article/{articles[0].pk}/change/")
    assert response.status_code == 200
    page = response.content.decode()
    assert 'name="embedding"' in page  # the editable text box, as asked
    assert "<dt>Dimensions</dt><dd>256</dd>" in page


@pytest.mark.parametrize(
    "fieldsets",
    [
        [(None, {"fields": [("title", "embedding", "vectorsearch_vector"), "body"]})],
        [(None, {"fields": ["title", "vectorsearch_vector"]}), ("More", {"fields": ["embedding"]})],
    ],
    ids=["one-row", "two-fieldsets"],
)
def test_the_display_named_twice_across_rows_or_fieldsets_shows_once(
    admin_client, article_admin, articles, fieldsets
):
    article_admin(fieldsets)
    response = admin_client.get(f"/admin/embedapp/article/{articles[0].pk}/change/")
    assert response.status_code == 200
    assert response.content.decode().count('class="vectorsearch-vector"') == 1

"""The admin's "Vector indexes" page: every vector index, its rows, health and calibration curve."""

import re
from io import StringIO

import numpy as np
import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.utils import timezone

from tests.browser import admin_login, click_and_wait
from tests.embedapp.models import Article, Note
from vectorsearch import calibration
from vectorsearch.admin.indexes import curve_chart, nice_ticks
from vectorsearch.management.utils import generic_index_name
from vectorsearch.registry import registry

URL = "/admin/vectorsearch/vectorindex/"
CURVE = [
    {"ef_search": 40, "recall": 0.879, "p50_ms": 2.1},
    {"ef_search": 100, "recall": 0.950, "p50_ms": 3.9},
    {"ef_search": 200, "recall": 0.981, "p50_ms": 9.6},
]


@pytest.fixture(autouse=True)
def fresh_cache():
    calibration.reset()
    yield
    calibration.reset()


def calibrate(ef_search=100, rows=3, curve=CURVE):
    return calibration.store(
        index_name="embedapp_article_hnsw", model=Article, field_name="embedding",
        ef_search=ef_search, target_recall=0.95, recall=0.95, k=10, queries=50, rows=rows,
        curve=curve,
    )  # fmt: skip


def row_of(page, name):
    match = re.search(rf'<tr id="index-{name}">(.*?)</tr>', page, re.S)
    assert match, f"no row for {name}"
    return re.sub(r"<[^>]+>", " ", match.group(1)).split()


@pytest.mark.django_db
def test_the_admin_index_links_to_the_page(admin_client):
    page = admin_client.get("/admin/").content.decode()
    assert f'href="{URL}"' in page
    assert "Vector indexes" in page


@pytest.mark.django_db
def test_every_vector_index_is_listed_with_rows_health_and_size(admin_client):
    Article.objects.bulk_create([Article(title=f"a{i}") for i in range(3)])
    call_command("vectorsearch_backfill", "embedapp.Article", stdout=StringIO())
    Article.objects.bulk_create([Article(title="new")])  # no vector yet: missing
    Article.objects.filter(title="a0").update(title="edited")  # stale
    page = admin_client.get(URL).content.decode()
    cells = row_of(page, "embedapp_article_hnsw")
    # Index, model · field, kind, embedded, stale, missing, size, health, ef_search, calibrated
    assert cells[:7] == [
        "embedapp_article_hnsw",
        "embedapp.Article",
        "·",
        "embedding",
        "HNSW",
        "3",
        "1",
    ]
    assert cells[7] == "1"  # missing
    assert "valid" in cells and "default" in cells and "calibrated" in cells
    # Meta.indexes of models nobody registered, and a quantized one.
    assert "benchitem_embedding_hnsw" in page
    assert row_of(page, "half_hnsw")[4:6] == ["HNSW", "(halfvec)"]
    # The generic table's index of a registration, not built yet.
    name = generic_index_name(registry.get(Note))
    assert "missing run vectorsearch_index" in " ".join(row_of(page, name))


@pytest.mark.django_db
def test_a_calibrated_index_shows_its_ef_search_date_and_curve_as_svg(admin_client):
    Article.objects.bulk_create(
        [Article(title=f"a{i}", embedding=np.ones(256) * (i + 1)) for i in range(3)]
    )
    stored = calibrate(100)
    page = admin_client.get(URL).content.decode()
    cells = row_of(page, "embedapp_article_hnsw")
    assert "100" in cells
    assert timezone.localtime(stored.calibrated_at).strftime("%Y-%m-%d") in cells
    svg = re.search(r'<section class="module vectorsearch-curve".*?</section>', page, re.S).group(0)
    assert svg.count("<circle") == 3
    for label in ("ef 40", "ef 100", "ef 200", "target 0.95"):
        assert f">{label}</text>" in svg
    assert "vectorsearch-chart-chosen" in svg  # the calibrated point stands out
    assert "<script" not in page.split("</header>", 1)[1]  # drawn on the server
    assert "Recalibrate" not in svg


@pytest.mark.django_db
def test_an_index_that_grew_says_to_recalibrate(admin_client):
    Article.objects.bulk_create(
        [Article(title=f"a{i}", embedding=np.ones(256) * (i + 1)) for i in range(10)]
    )
    calibrate(100, rows=4)
    page = admin_client.get(URL).content.decode()
    assert "rows grew by 150% (4 to 10)" in page
    assert "vectorsearch_bench embedapp.article.embedding --apply" in page


@pytest.mark.django_db
def test_non_staff_users_are_sent_to_the_login_page(client):
    user = User.objects.create_user("visitor", password="pw")
    client.force_login(user)
    response = client.get(URL)
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    client.logout()
    assert client.get(URL).status_code == 302


@pytest.mark.django_db
def test_staff_need_the_view_permission(client):
    user = User.objects.create_user("operator", password="pw", is_staff=True)
    client.force_login(user)
    assert client.get(URL).status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="view_vectorindex"))
    user = User.objects.get(pk=user.pk)  # permissions are cached on the instance
    client.force_login(user)
    response = client.get(URL)
    assert response.status_code == 200
    assert "embedapp_article_hnsw" in response.content.decode()


@pytest.mark.django_db
def test_the_page_is_read_only(admin_client):
    calibrate()
    assert admin_client.get(f"{URL}add/").status_code == 404
    assert admin_client.get(f"{URL}1/change/").status_code == 404


# -- the chart ------------------------------------------------------------------------------------


def test_the_chart_puts_latency_on_x_and_recall_on_y():
    chart = curve_chart(CURVE, 0.95, chosen=100)
    xs = [p.x for p in chart.points]
    ys = [p.y for p in chart.points]
    assert xs == sorted(xs) and ys == sorted(ys, reverse=True)  # slower and better: right, up
    assert chart.left <= min(xs) and max(xs) <= chart.right
    assert chart.top <= min(ys) and max(ys) <= chart.bottom
    # The target line sits where recall 0.95 is: at the chosen point, which reaches 0.950.
    assert chart.target_y == pytest.approx(chart.points[1].y)
    assert [p.chosen for p in chart.points] == [False, True, False]
    assert "ef_search 100: recall 0.950, p50 3.90 ms" in chart.description


def test_chart_labels_of_crowded_points_do_not_overlap():
    crowded = [
        {"ef_search": e, "recall": 0.9 + e / 10000, "p50_ms": 2 + e / 1000}
        for e in range(90, 131, 10)
    ]
    chart = curve_chart(crowded, 0.95)
    positions = {(p.label_x, p.label_y, p.anchor) for p in chart.points}
    assert len(positions) == len(chart.points)


def test_nice_ticks_cover_the_range_with_round_steps():
    assert nice_ticks(0, 10.4) == [0, 5, 10, 15]
    assert nice_ticks(0, 9.6) == [0, 2.5, 5, 7.5, 10]
    assert nice_ticks(0.85, 1.0) == [0.85, 0.9, 0.95, 1.0]
    assert curve_chart([], 0.95) is None


# -- in a browser ---------------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_page_in_a_browser(browser, live_server, admin_user, screenshot):
    from selenium.webdriver.common.by import By

    from tests.test_bench import vacuum_articles

    vacuum_articles()
    rng = np.random.default_rng(3)
    Article.objects.bulk_create(
        [Article(title=f"r{i}", embedding=rng.standard_normal(256)) for i in range(2000)],
        batch_size=500,
    )
    call_command(
        "vectorsearch_bench", "embedapp.Article", "--apply", queries=20,
        ef_search=[10, 20, 40, 80, 160], target_recall=0.95, stdout=StringIO(),
    )  # fmt: skip
    admin_login(browser, live_server, admin_user)
    link = browser.find_element(By.LINK_TEXT, "Vector indexes")
    click_and_wait(browser, link)
    assert browser.title.startswith("Vector indexes")
    chart = browser.find_element(By.CSS_SELECTOR, "#curve-embedapp_article_hnsw svg")
    assert chart.size["width"] > 300 and chart.size["height"] > 150
    circles = chart.find_elements(By.TAG_NAME, "circle")
    assert len(circles) >= 5
    screenshot("vector-indexes")
    browser.execute_script("arguments[0].scrollIntoView()", chart)
    screenshot("curve")

"""The admin's search by meaning and "Similar items", in a real browser, by keyboard."""

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser import admin_login, click_and_wait
from tests.embedapp.models import Article

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _wait_for_new_page(browser, old_element):
    """Until the page that held ``old_element`` is replaced and the new one is loaded."""
    wait = WebDriverWait(browser, 10)
    wait.until(expected_conditions.staleness_of(old_element))
    wait.until(lambda b: b.execute_script("return document.readyState") == "complete")


def test_search_by_meaning_and_similar_items(browser, live_server, admin_user, screenshot):
    for title, body in [
        ("Cats purr softly", "A cat purrs when it is content."),
        ("Dogs bark loudly", "A dog barks at the postman."),
        ("Stock market news", "Shares fell on Monday."),
        ("Kittens and cats", "Young cats purr and play."),
        ("Bond yields rise", "The market expects rates to rise."),
    ]:
        Article.objects.create(title=title, body=body)
    admin_login(browser, live_server, admin_user)
    browser.get(f"{live_server.url}/admin/embedapp/article/")

    old_list = browser.find_element(By.ID, "result_list")
    search = browser.find_element(By.ID, "searchbar")
    search.send_keys("cat purring")
    # Keyboard only: Tab to the toggle (its label names it), Space ticks it, Enter submits.
    search.send_keys(Keys.TAB)
    toggle = browser.switch_to.active_element
    assert toggle.get_attribute("id") == "vectorsearch-semantic"
    label = browser.find_element(By.CSS_SELECTOR, "label[for=vectorsearch-semantic]")
    assert label.text == "By meaning"
    toggle.send_keys(Keys.SPACE)
    assert toggle.is_selected()
    toggle.send_keys(Keys.ENTER)
    _wait_for_new_page(browser, old_list)  # the old page has result rows too
    assert "semantic=1" in browser.current_url

    rows = browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
    screenshot("ranked")
    titles = [row.find_element(By.CSS_SELECTOR, "th a").text for row in rows]
    assert titles[0] == "Cats purr softly"
    assert set(titles[:2]) == {"Cats purr softly", "Kittens and cats"}
    scores = [
        float(row.find_element(By.CSS_SELECTOR, "td.field-vectorsearch_score").text) for row in rows
    ]
    assert scores == sorted(scores, reverse=True)
    assert browser.find_element(By.ID, "vectorsearch-semantic").is_selected()  # kept on

    first = rows[0].find_element(By.CSS_SELECTOR, "th a")
    click_and_wait(browser, first)
    panel = browser.find_element(By.ID, "vectorsearch-similar")
    screenshot("similar-items")
    assert panel.find_element(By.TAG_NAME, "h2").text == "Similar items"
    links = panel.find_elements(By.CSS_SELECTOR, "li a")
    assert links[0].text == "Kittens and cats"
    assert "Cats purr softly" not in [link.text for link in links]
    vector = browser.find_element(By.CSS_SELECTOR, ".vectorsearch-vector")
    assert "256" in vector.text and vector.find_element(By.CSS_SELECTOR, "svg polyline")

    click_and_wait(browser, links[0])
    assert browser.find_element(By.CSS_SELECTOR, "#content h2").text == "Kittens and cats"

    browser.get(f"{live_server.url}/admin/vectorsearch/embedding/")
    screenshot("embedding-table")
    states = browser.find_elements(By.CSS_SELECTOR, "td.field-state")
    assert [state.text for state in states] == ["current"] * 5

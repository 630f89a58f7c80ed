"""The search page in a real browser: type a query, see results, apply a facet, page, fail kindly."""

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from tests.browser import click_and_wait
from tests.embedapp.models import Note

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

TOPICS = {
    "account": ["reset your password", "password rules", "change the account email",
                "two-factor login codes", "close an account", "password manager tips"],
    "orders": ["track a parcel", "return a damaged parcel", "shipping times to Europe",
               "cancel an order", "order password protected invoices", "delivery slots"],
    "security": ["<script>alert('x')</script> password phishing warning", "report a password leak"],
}  # fmt: skip


@pytest.fixture
def notes():
    created = []
    for category, titles in TOPICS.items():
        for title in titles:
            body = f"How to {title}. This note explains the steps for {title} in detail."
            created.append(
                Note.objects.create(title=title.capitalize(), body=body, category=category)
            )
    return created


def titles(browser):
    return [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".vs-result-title")]


def test_search_page_query_facet_and_pages(browser, live_server, notes, screenshot):
    browser.set_window_size(1280, 1000)
    browser.get(f"{live_server.url}/search/?per_page=4&model=embedapp.note")
    box = browser.find_element(By.CSS_SELECTOR, "input[type=search]")
    assert box.get_attribute("id") == browser.find_element(
        By.CSS_SELECTOR, "label[for=id_q]"
    ).get_attribute("for")
    screenshot("empty")

    # Keyboard only: type and press Enter.
    box.send_keys("password", Keys.ENTER)
    assert "password" in browser.find_element(By.ID, "vs-results-heading").text
    found = titles(browser)
    assert len(found) == 4  # the form keeps the page size it was opened with
    marks = browser.find_elements(By.CSS_SELECTOR, ".vs-snippet mark")
    assert marks and all(m.text.lower().startswith("password") for m in marks)
    # The script in a title is shown as text, not run.
    screenshot("results")

    # The facet: only "orders" notes remain, and the facet says it is selected.
    click_and_wait(browser, browser.find_element(By.PARTIAL_LINK_TEXT, "orders"))
    assert "category=orders" in browser.current_url
    selected = browser.find_element(By.CSS_SELECTOR, ".vs-facet-value.vs-selected")
    assert selected.get_attribute("aria-current") == "true" and "orders" in selected.text
    in_orders = {n.title for n in notes if n.category == "orders"}
    assert set(titles(browser)) <= in_orders
    screenshot("facet")

    # Next page: results 5 and on, still within the facet.
    first_page = titles(browser)
    click_and_wait(browser, browser.find_element(By.CSS_SELECTOR, "a[rel=next]"))
    assert "page=2" in browser.current_url
    second_page = titles(browser)
    assert second_page and set(second_page) <= in_orders
    assert set(second_page).isdisjoint(first_page)
    assert browser.find_element(By.CSS_SELECTOR, "ol.vs-result-list").get_attribute("start") == "5"
    screenshot("page-2")


def test_script_in_documents_is_shown_as_text(browser, live_server, notes, screenshot):
    browser.get(f"{live_server.url}/search/?q=phishing+warning&category=security")
    assert "<script>alert('x')</script> password phishing warning" in titles(browser)[0]
    # An alert would block this call had the script run.
    assert browser.execute_script("return document.querySelectorAll('main script').length") == 0


def test_bad_input_is_explained_on_the_page(browser, live_server, notes, screenshot):
    browser.get(f"{live_server.url}/search/?q=x&ordering=password")
    alert = browser.find_element(By.CSS_SELECTOR, "[role=alert]")
    assert "Unknown parameter 'ordering'" in alert.text
    screenshot("error")


def test_the_page_fits_a_phone(browser, live_server, notes, screenshot):
    browser.set_window_size(390, 844)
    try:
        browser.get(f"{live_server.url}/search/?q=password+reset&model=embedapp.note")
        width = browser.execute_script("return document.documentElement.scrollWidth")
        assert width <= 390  # no sideways scrolling
        facets = browser.find_element(By.CSS_SELECTOR, ".vs-facets")
        results = browser.find_element(By.CSS_SELECTOR, ".vs-results")
        assert facets.location["y"] > results.location["y"]  # facets below the results
        screenshot("phone")
    finally:
        browser.set_window_size(1280, 1000)

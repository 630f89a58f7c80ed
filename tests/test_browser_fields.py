"""Vector fields in the admin, in a real browser: a bad vector is a form error, a good one saves."""

import pytest
from selenium.webdriver.common.by import By

from tests.browser import admin_login, click_and_wait
from tests.testapp.models import Document

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_admin_refuses_a_nan_vector_and_saves_a_good_one(
    browser, live_server, admin_user, screenshot
):
    admin_login(browser, live_server, admin_user)
    browser.get(f"{live_server.url}/admin/testapp/document/add/")
    browser.find_element(By.NAME, "content").send_keys("cats")
    browser.find_element(By.NAME, "embedding").send_keys("[1, nan, 2]")
    click_and_wait(browser, browser.find_element(By.NAME, "_save"))
    screenshot("nan-refused")
    errors = browser.find_element(By.CSS_SELECTOR, ".errorlist").text
    assert errors == "Element 1 of the vector is NaN (not a number)."
    assert Document.objects.count() == 0

    field = browser.find_element(By.NAME, "embedding")
    field.clear()
    field.send_keys("[0.1, 0.2, 0.7]")
    click_and_wait(browser, browser.find_element(By.NAME, "_save"))
    screenshot("saved")
    assert "was added successfully" in browser.find_element(By.CSS_SELECTOR, ".messagelist").text
    assert Document.objects.get().embedding == pytest.approx([0.1, 0.2, 0.7])

from django.test import override_settings

from vectorsearch.checks import check_settings
from vectorsearch.conf import get_settings


def test_settings_merge_over_defaults_and_reset_on_change():
    assert get_settings()["MAX_K"] == 1000
    with override_settings(VECTORSEARCH={"MAX_K": 50}):
        assert get_settings()["MAX_K"] == 50
        assert get_settings()["CREATE_EXTENSION"] is True
    assert get_settings()["MAX_K"] == 1000


def test_unknown_settings_are_a_system_check_error():
    with override_settings(VECTORSEARCH={"MAX_KK": 5}):
        (error,) = check_settings()
    assert error.id == "vectorsearch.E005"
    assert "Unknown key(s) in the VECTORSEARCH setting: MAX_KK" in error.msg

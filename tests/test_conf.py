import pytest
from django.test import override_settings

from vectorsearch.checks import check_settings
from vectorsearch.conf import SYNC_MODES, get_settings


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


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"SYNC": "later"}, "VECTORSEARCH['SYNC'] must be 'immediate', 'task' or 'manual'"),
        (
            {"ADMIN_REEMBED_MAX_ROWS": 0},
            "VECTORSEARCH['ADMIN_REEMBED_MAX_ROWS'] must be a positive",
        ),
        ({"ADMIN_REEMBED_MAX_SECONDS": 2.5}, "VECTORSEARCH['ADMIN_REEMBED_MAX_SECONDS'] must be a"),
    ],
)
def test_sync_and_admin_re_embed_settings_are_checked(setting, message):
    with override_settings(VECTORSEARCH=setting):
        (error,) = check_settings()
    assert error.id == "vectorsearch.E005"
    assert message in error.msg


def test_register_takes_the_sync_modes_the_setting_takes():
    from tests.embedapp.models import Note
    from vectorsearch.registry import Registry

    for mode in SYNC_MODES:
        assert Registry().register(Note, fields=["title"], sync=mode).sync == mode
    with pytest.raises(ValueError, match="must be one of immediate, task, manual, not 'later'"):
        Registry().register(Note, fields=["title"], sync="later")

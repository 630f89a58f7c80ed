"""The test settings with Django's own connection pool (psycopg_pool, Django 5.1+).

Run the query tests through it: DJANGO_SETTINGS_MODULE=tests.settings_pool pytest tests/test_query.py
tests/test_db.py tests/test_pooling.py (.ci/run does).
"""

from tests.settings import *  # noqa: F403
from tests.settings import DATABASES

# Few connections, so that requests (and threads) take over each other's server sessions. A
# pool needs CONN_MAX_AGE = 0: a request hands its connection back when it ends.
DATABASES["default"] = {
    **DATABASES["default"],
    "CONN_MAX_AGE": 0,
    "OPTIONS": {"pool": {"min_size": 1, "max_size": 4, "timeout": 10}},
}

"""The test settings through pgbouncer in transaction mode (``python -m tests.pgbouncer start``).

Transaction mode hands a server connection to a client for one transaction only, so Django must
not keep server-side cursors open across them (DISABLE_SERVER_SIDE_CURSORS) and must not prepare
statements (Django's default with psycopg 3: client-side binding, no prepare_threshold).
"""

from tests.pgbouncer import DIRECTORY, PORT
from tests.settings import *  # noqa: F403
from tests.settings import DATABASES

DATABASES["default"] = {
    **DATABASES["default"],
    "HOST": str(DIRECTORY),
    "PORT": str(PORT),
    "DISABLE_SERVER_SIDE_CURSORS": True,
}

# tests/conftest.py: let pgbouncer's server sessions go before dropping the test database.
TESTS_PGBOUNCER = True

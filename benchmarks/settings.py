"""Settings for the benchmark scripts: the test settings, on a separate database.

The benchmark table (100k x 384) lives in the database ``vectorsearch_bench`` of the same embedded
server, so the test suite never sees it and it survives between runs.
"""

from tests.settings import *  # noqa: F403

DATABASES["default"]["NAME"] = "vectorsearch_bench"  # noqa: F405
DEBUG = False

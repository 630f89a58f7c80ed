"""Settings for the test suite: a real PostgreSQL + pgvector, embedded unless DATABASE_URL is set."""

import os
from pathlib import Path

from vectorsearch.embedded import database_settings

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]
USE_TZ = True

DATABASES = {"default": database_settings(BASE_DIR / ".pgdata")}
# A streaming standby of the embedded server, started only by tests/test_replicas.py's fixture
# (pg_basebackup -R), listening on a socket in .pgreplica/run. TEST MIRROR: the test database
# the primary creates reaches the standby through the WAL, under the same name.
REPLICA_DIR = BASE_DIR / ".pgreplica"
DATABASES["replica"] = {
    **DATABASES["default"],
    "HOST": str(REPLICA_DIR / "run"),
    "PORT": "5433",
    "TEST": {"MIRROR": "default"},
}

# The test app comes first on purpose: the pgvector extension must exist before its vector
# columns whatever the order of INSTALLED_APPS.
INSTALLED_APPS = [
    "tests.testapp",
    "tests.queryapp",
    "tests.embedapp",
    "tests.adminapp",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "vectorsearch",
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "tests.urls"
STATIC_URL = "/static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

# Small embedders keep the tests fast; "default" is what registrations use unless they name one.
# The SIGKILL test runs its backfills with a slowed (otherwise identical) embedder.
VECTORSEARCH_EMBEDDERS = {
    "default": {
        "BACKEND": "vectorsearch.embedders.HashingEmbedder",
        "OPTIONS": {"dimensions": 256},
    },
    "small": {"BACKEND": "vectorsearch.embedders.HashingEmbedder", "OPTIONS": {"dimensions": 32}},
}
if os.environ.get("VECTORSEARCH_TEST_SLOW_EMBEDDER"):
    VECTORSEARCH_EMBEDDERS["default"]["BACKEND"] = "tests.embedapp.embedders.SlowHashingEmbedder"

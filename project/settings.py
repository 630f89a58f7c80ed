"""The demo site: an ordinary Django project that uses vectorsearch through its public API."""

import os
from pathlib import Path

from vectorsearch.embedded import database_settings

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "demo-only-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True
TIME_ZONE = "UTC"

# $DATABASE_URL when set, else an embedded PostgreSQL + pgvector in .pgdata/ (git-ignored).
DATABASES = {"default": database_settings(BASE_DIR / ".pgdata", CONN_MAX_AGE=60)}

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "vectorsearch",
    "project.demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "project.urls"
WSGI_APPLICATION = "project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # The site's own overrides of app templates live in the top-level templates/.
        "DIRS": [BASE_DIR / "templates"],
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

# Static token embeddings (WordLlama, bundled in the wordllama package, nothing downloaded): the
# whole corpus embeds in about half a minute on 2 cores and a query in well under a millisecond.
# docs/embeddings.md compares it with the hashing fallback and a transformer model.
VECTORSEARCH_EMBEDDERS = {
    "default": {
        "BACKEND": "vectorsearch.embedders.StaticEmbedder",
        "OPTIONS": {"model": "wordllama"},
    }
}

STATIC_URL = "/static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

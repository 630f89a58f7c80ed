"""A benchmark-only app: GloVe words with their vector in the model's own column.

Not installed by the test settings; ``benchmarks/bench_import.py`` adds it to INSTALLED_APPS and
creates its table with ``migrate --run-syncdb`` (it has no migrations on purpose).
"""

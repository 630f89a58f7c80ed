"""vectorsearch's own models.

The module exists (even while it defines no model) because Django sends ``pre_migrate`` only to
apps with a models module, and that signal is what creates the pgvector extension before any
migration runs.
"""

"""The query path: every ranking in vectorsearch goes through this package.

- :mod:`.targets`: where vectors live (a model's column, or the generic Embedding table);
- :mod:`.vectors`: a text, list, array or instance made into a checked query vector;
- :mod:`.expressions`: the SQL pieces (query vector, unindexed distance, binary read);
- :mod:`.spec`: what ``similar_to()`` records, checked;
- :mod:`.planner`: ``plan(queryset, spec) -> Plan``: strategy, SQL shape, settings;
- :mod:`.queryset`: ``VectorQuerySet``, which records specs and asks the planner;
- :mod:`.hybrid`, :mod:`.mmr`: hybrid full-text + vector fusion, diversification;
- :mod:`.search`: ``vectorsearch.search()``, the thin wrapper the page, API and admin call.

(Named ``ranking`` rather than ``search``: ``vectorsearch.search`` is the public function.)
"""

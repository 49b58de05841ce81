"""The Batch API engine's bookkeeping tables, on both backends (a SQLite file, a real PostgreSQL database)."""

from __future__ import annotations

import pytest

from uf_experiments.core.records import Usage
from uf_experiments.engines.openai.batch_format import LineResult
from uf_experiments.engines.openai.batch_state import BatchState, Submitted


@pytest.fixture(params=["sqlite", "postgres"])
def where(request: pytest.FixtureRequest, tmp_path) -> str:
    return str(tmp_path / "s.sqlite") if request.param == "sqlite" else request.getfixturevalue("pg_url")


def test_a_batch_from_record_to_emitted(where):
    state = BatchState(where)
    keys = [f"k{i}" for i in range(1200)]  # past the helper's chunk size
    sub = state.record("file-1", "engine-id", "gpt-x", keys)
    assert sub == Submitted("file-1", None, "creating", sub.created)
    state.update("file-1", id="batch-1", status="in_progress")
    live = state.live(["k3", "k1100", "other"])
    assert live == {Submitted("file-1", "batch-1", "in_progress", sub.created): {"k3", "k1100"}}
    assert sorted(state.keys_of("file-1")) == sorted(keys)
    lines = {"k0": LineResult("A", Usage(5, 1, 0), "stop"), "k1": LineResult(None, error="HTTP 500: x"),
             "k2": LineResult(None, Usage(5, 0, 0), "length", "no content", retry=False)}
    state.consume("file-1", "batch-1", lines, status="completed")
    assert state.live(keys) == {}  # consumed: nothing to re-attach to
    got = state.results(keys)
    assert set(got) == {"k0", "k2"}  # paid lines only; kept until emitted, never to be retried
    assert got["k0"] == LineResult("A", Usage(5, 1, 0), "stop", retry=False)
    state.drop_results(["k0"])
    assert set(state.results(keys)) == {"k2"}
    state.close()


def test_a_failed_consume_leaves_the_batch_live(where):
    state = BatchState(where)
    state.record("file-1", "engine-id", "gpt-x", ["a"])
    with pytest.raises(Exception):  # noqa: B017 - an unknown column: the transaction is rolled back
        state.consume("file-1", "b", {"a": LineResult("A")}, no_such_column=1)
    assert state.results(["a"]) == {} and len(state.live(["a"])) == 1
    state.close()

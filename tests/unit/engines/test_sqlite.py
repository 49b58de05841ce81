"""The SQLite helper the request cache and the Batch API's bookkeeping share."""

from __future__ import annotations

import sqlite3

import pytest

from uf_experiments.engines.sqlite import CHUNK, connect, immediate, in_chunks, select_in


@pytest.fixture
def db(tmp_path):
    db = connect(tmp_path / "sub" / "t.sqlite", timeout_s=5.0)
    db.execute("CREATE TABLE t (key TEXT PRIMARY KEY, owner TEXT, n INTEGER)")
    yield db
    db.close()


def test_connect_makes_the_directory_and_sets_wal_and_the_busy_timeout(tmp_path):
    db = connect(tmp_path / "a" / "b" / "x.sqlite", timeout_s=2.5)
    assert (tmp_path / "a" / "b" / "x.sqlite").exists()
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA busy_timeout").fetchone()[0] == 2500
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert db.isolation_level is None  # autocommit: a statement commits by itself
    db.close()


def test_select_in_returns_every_row_past_the_chunk_size(db):
    n = 2 * CHUNK + 1234  # over SQLite's old 999-parameter limit, and several chunks
    db.executemany("INSERT INTO t VALUES (?, 'me', ?)", [(f"k{i}", i) for i in range(n)])
    keys = [f"k{i}" for i in range(n)] + ["missing"]
    rows = select_in(db, "SELECT key, n FROM t", keys)
    assert sorted(n for _, n in rows) == list(range(n))
    assert select_in(db, "SELECT key FROM t", []) == []


def test_select_in_on_another_column_with_a_tail(db):
    db.executemany("INSERT INTO t VALUES (?, ?, ?)", [("a", "x", 1), ("b", "y", 2), ("c", "x", 3)])
    rows = select_in(db, "SELECT key FROM t", ["x"], column="owner", tail=" ORDER BY n DESC")
    assert rows == [("c",), ("a",)]


def test_in_chunks_binds_params_before_the_keys(db):
    n = CHUNK + 10
    db.executemany("INSERT INTO t VALUES (?, ?, 0)", [(f"k{i}", "me" if i % 2 else "other") for i in range(n)])
    in_chunks(db, "DELETE FROM t WHERE owner = ? AND key IN ({keys})", [f"k{i}" for i in range(n)], ["me"])
    left = {k for (k,) in db.execute("SELECT key FROM t")}
    assert left == {f"k{i}" for i in range(n) if i % 2 == 0}


def test_immediate_commits_the_block(db, tmp_path):
    with immediate(db) as same:
        assert same is db and db.in_transaction
        db.execute("INSERT INTO t VALUES ('a', 'me', 1)")
        db.execute("INSERT INTO t VALUES ('b', 'me', 2)")
    assert not db.in_transaction
    other = sqlite3.connect(tmp_path / "sub" / "t.sqlite")  # committed: another connection sees it
    assert other.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 2
    other.close()


@pytest.mark.parametrize("error", [ValueError, KeyboardInterrupt])
def test_immediate_rolls_back_on_an_exception(db, error):
    db.execute("INSERT INTO t VALUES ('kept', 'me', 0)")
    with pytest.raises(error):
        with immediate(db):
            db.execute("INSERT INTO t VALUES ('a', 'me', 1)")
            db.execute("UPDATE t SET n = 9 WHERE key = 'kept'")
            raise error()
    assert not db.in_transaction
    assert db.execute("SELECT key, n FROM t").fetchall() == [("kept", 0)]


def test_immediate_takes_the_write_lock_at_once(db, tmp_path):
    other = connect(tmp_path / "sub" / "t.sqlite", timeout_s=0.05)
    with immediate(db):
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
    other.execute("BEGIN IMMEDIATE")  # free again once the block ends
    other.execute("ROLLBACK")
    other.close()

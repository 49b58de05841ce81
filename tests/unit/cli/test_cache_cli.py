"""``uf-experiments-cache``: copy SQLite -> PostgreSQL -> SQLite keeps every row byte for byte; stats; prune by
model and by age; one line and exit 2 for a location it cannot use."""

from __future__ import annotations

import sqlite3
import time

from uf_experiments.cli.cache import main
from uf_experiments.core.records import Completion, Request, Usage
from uf_experiments.engines.cache import COLUMNS, RequestCache
from uf_experiments.engines.openai.batch_format import LineResult
from uf_experiments.engines.openai.batch_state import BatchState

TABLES = {"completions": "key", "batches": "input_file_id", "batch_requests": "input_file_id, key",
          "batch_results": "key"}


def req(i: int, model: str = "gen-a") -> Request:
    return Request(model=model, messages=({"role": "user", "content": f"q{i}"},), max_tokens=8, temperature=1.0,
                   top_p=1.0, seed=i)


def fill(path: str) -> None:
    """Entries of two models with awkward values (unicode, newlines, NUL-free control characters, a NULL cost and
    finish reason, a float with every digit), and a Batch API record with a paid line."""
    cache = RequestCache(path)
    texts = ["plain", "ünïcode ✓ 🙂\nsecond line\ttab", "x" * 5000, "", "'quotes' \"and\" %s ? $1 \\ back"]
    for i, text in enumerate(texts):
        cache.put("engine-1", Completion(req(i), text, Usage(10 + i, 20 + i, i), "stop" if i else None,
                                         cost_usd=None if i == 3 else 0.1 + 1 / 3 * i))
    cache.put("engine-2", Completion(req(9, "judge-x"), "Rating: 4", Usage(100, 7, 0), "stop", cost_usd=0.25))
    cache.close()
    state = BatchState(path)
    state.record("file-1", "engine-1", "gen-a", ["k1", "k2"])
    state.update("file-1", id="batch-1", status="completed")
    state.consume("file-1", "batch-1", {"k1": LineResult("A ✓", Usage(5, 1, 0), "stop")})
    state.close()


def dump(path: str) -> dict[str, list[tuple]]:
    with sqlite3.connect(path) as db:
        return {t: db.execute(f"SELECT * FROM {t} ORDER BY {order}").fetchall() for t, order in TABLES.items()}


def test_copy_to_postgresql_and_back_keeps_every_row_byte_for_byte(tmp_path, pg_url, capsys):
    src, back = str(tmp_path / "src.sqlite"), str(tmp_path / "back.sqlite")
    fill(src)
    assert main(["copy", src, pg_url]) == 0
    assert capsys.readouterr().out.strip() == (
        f"copied {src} -> {pg_url} (completions: 6 added of 6, batches: 1 added of 1, batch_requests: 2 added of 2, "
        "batch_results: 1 added of 1)")
    assert main(["copy", src, pg_url]) == 0  # again: everything is there already
    assert "completions: 0 added of 6" in capsys.readouterr().out
    assert main(["copy", pg_url, back]) == 0
    capsys.readouterr()
    original, returned = dump(src), dump(back)
    assert len(original["completions"]) == 6 and original == returned
    pg = RequestCache(pg_url)
    rows = pg._db.execute(f"SELECT {', '.join(COLUMNS)} FROM completions ORDER BY key").fetchall()
    pg.close()
    assert [tuple(r) for r in rows] == original["completions"]  # the same in PostgreSQL, floats to the last bit
    hits = RequestCache(back).get_many("engine-1", [req(1)])
    assert hits[req(1).key].text == "ünïcode ✓ 🙂\nsecond line\ttab"


def test_stats_and_prune(tmp_path, pg_url, capsys):
    src = str(tmp_path / "src.sqlite")
    fill(src)
    main(["copy", src, pg_url])
    capsys.readouterr()
    for where in (src, pg_url):
        assert main(["stats", where]) == 0
        out = capsys.readouterr().out.splitlines()
        assert out[0] == (f"{where}: 6 entries, ${0.1 * 4 + 1 / 3 * (1 + 2 + 4) + 0.25:.4f} stored (1 entries from "
                          "before costs were stored: unpriced)")
        assert out[2].split()[:5] == ["gen-a", "5", f"{0.1 * 4 + 1 / 3 * 7:.4f}", str(10 * 5 + 10), str(20 * 5 + 10)]
        assert out[3].split()[:5] == ["judge-x", "1", "0.2500", "100", "7"]
    pg = RequestCache(pg_url)
    pg._db.execute("UPDATE completions SET created = ? WHERE model = 'gen-a' AND prompt_tokens < 12",
                   (time.time() - 40 * 86400,))  # two entries are 40 days old
    pg.close()
    assert main(["prune", pg_url, "--older-than", "30d", "--dry-run"]) == 0
    assert capsys.readouterr().out.strip() == f"would delete 2 entries older than 30d from {pg_url}"
    assert main(["prune", pg_url, "--older-than", "30d"]) == 0
    assert main(["prune", pg_url, "--model", "judge-x"]) == 0
    assert capsys.readouterr().out.splitlines() == [f"deleted 2 entries older than 30d from {pg_url}",
                                                    f"deleted 1 entries of model judge-x from {pg_url}"]
    pg = RequestCache(pg_url)
    assert sorted(m for (m,) in pg._db.execute("SELECT model FROM completions").fetchall()) == ["gen-a"] * 3
    pg.close()
    assert main(["prune", src, "--model", "gen-a", "--older-than", "1h"]) == 0  # both: only what matches both
    assert "deleted 0 entries of model gen-a and older than 1h" in capsys.readouterr().out


def test_what_it_cannot_use_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    cases = [
        (["stats", str(tmp_path / "nope.sqlite")],
         f"error: {tmp_path / 'nope.sqlite'}: no such cache file (pass the cache.path of your runs, or a "
         "postgresql:// URL)"),
        (["copy", str(tmp_path / "nope.sqlite"), "postgresql://uf@127.0.0.1:9/uf"],
         f"error: {tmp_path / 'nope.sqlite'}: no such cache file (pass the cache.path of your runs, or a "
         "postgresql:// URL)"),
        (["stats", "postgresql://uf:s3cret@127.0.0.1:9/uf"],
         "error: postgresql://uf@127.0.0.1:9/uf (password removed) carries a password: drop it from the URL and "
         "export PGPASSWORD or put it in ~/.pgpass"),
        (["stats", "postgresql://uf@127.0.0.1:9/uf"],
         "error: postgresql://uf@127.0.0.1:9/uf: cannot connect (Connection refused): start the server or fix the "
         "host and port in the URL"),
        (["prune", str(tmp_path)], "error: prune needs --model NAME and/or --older-than AGE (e.g. 30d)"),
        (["prune", str(tmp_path), "--older-than", "soon"],
         "error: --older-than soon: give an age like 30d, 12h, 90m or 45s"),
    ]
    for argv, line in cases:
        assert main(argv) == 2
        captured = capsys.readouterr()
        assert captured.err.strip() == line and captured.out == ""
        assert "s3cret" not in captured.err
    assert not (tmp_path / "nope.sqlite").exists()  # a missing source is not created

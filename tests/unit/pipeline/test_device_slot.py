"""Two device models take turns on the device (one loaded at a time). While the holder's batch is in flight and the
other model waits for the device, the holder's loop sleeps until the batch ends: it once woke again and again
(a busy loop holding the GIL, which slowed the batch itself ~10x on the SmolLM2 demo). Counted, not timed: how
often a worker's loop waited."""

from __future__ import annotations

import json

from tests.conftest import compose_config
from tests.helpers.fake_openai import FakeJudge
from uf_experiments.pipeline import worker
from uf_experiments.pipeline.run import run

ECHO = "tests.helpers.echo_engine.EchoEngine"  # a device engine without a model: answers a batch after delay_s


def test_a_holder_with_a_batch_in_flight_does_not_spin_while_another_model_waits(tmp_path, monkeypatch):
    data = tmp_path / "p.jsonl"
    data.write_text("".join(json.dumps({"prompt_id": f"p{i}", "source": "flan", "instruction": f"Question {i}."})
                            + "\n" for i in range(4)))
    waits = {"n": 0}
    real_wait = worker.ModelWorker._wait

    async def counted(self, timeout):
        waits["n"] += 1
        await real_wait(self, timeout)

    monkeypatch.setattr(worker.ModelWorker, "_wait", counted)
    with FakeJudge() as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        cfg = compose_config([
            "pool=tiny", "pool.size=2", "sampling.n=2", "judge=served", "judge.model.path=judge-x",
            "judge.output=text", "aspect=[instruction_following]", "dataset=local", f"dataset.path={data}",
            "tracking=none", f"cache.path={tmp_path / 'c.sqlite'}",
            f"pool.models.tiny_a.engine._target_={ECHO}", "+pool.models.tiny_a.engine.delay_s=1",
            f"pool.models.tiny_b.engine._target_={ECHO}", "+pool.models.tiny_b.engine.delay_s=1"])
        summary = run(cfg, tmp_path / "run")
    assert summary["exit_code"] == 0 and summary["counts"]["rated_rows"] == 4
    assert summary["generation"]["engine_calls"] == 8  # both models answered all four prompts, one batch each
    # a handful of wake-ups per worker (requests arriving, a batch ending, the device handed over); the busy loop
    # made tens of thousands in the two one-second batches
    assert waits["n"] < 100, waits["n"]


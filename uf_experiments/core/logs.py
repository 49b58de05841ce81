"""The console's log level (``log_level``): our own lines at INFO, third parties (vLLM, httpx, ...) at WARNING,
while the run dir's ``uf-experiments.log`` (Hydra's job logging) keeps INFO from everything.

Hydra's job logging puts two handlers on the root logger: ``console`` (a plain ``StreamHandler``) and ``file``.
:func:`configure` puts a :class:`ConsoleFilter` on the console one, so a third party's INFO line reaches the file
but not the console, and a third party's warning repeated word for word (vLLM's, once per engine load) is shown
once. vLLM configures logging of its own (a stdout handler, not propagated); at the default level it is told not
to (``VLLM_CONFIGURE_LOGGING=0``, unless the environment already says something about vLLM's logging), so its
records go through the same two handlers. ``log_level=debug`` or ``hydra.verbose=true``: everything as before.
"""

from __future__ import annotations

import logging
import os
import warnings

OWN = ("uf_experiments", "hydra_plugins", "__main__")  # loggers whose INFO lines the console shows
VLLM_LOGGING_ENV = ("VLLM_CONFIGURE_LOGGING", "VLLM_LOGGING_LEVEL", "VLLM_LOGGING_CONFIG_PATH")
LEVELS = ("info", "debug")
THIRD_PARTY_DEPRECATIONS = (r"vllm\.", r"torch\.", r"transformers\.")
_STATE = {"quiet": True}


def quiet() -> bool:
    """True unless the run asked for everything (``log_level=debug``, ``hydra.verbose``): engines then keep their
    own progress bars off (vLLM's checkpoint loading)."""
    return _STATE["quiet"]


def is_own(name: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in OWN)


class ConsoleFilter(logging.Filter):
    """Our records at any level; a third party's from WARNING up, each distinct message once."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[tuple[str, int, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if is_own(record.name):
            return True
        if record.levelno < logging.WARNING:
            return False
        if record.levelno >= logging.ERROR:
            return True
        key = (record.name, record.levelno, str(record.msg))
        if key in self.seen:
            return False
        self.seen.add(key)
        return True


def console_handlers() -> list[logging.Handler]:
    """The root logger's console handlers: plain ``StreamHandler`` instances (Hydra's ``console``); not the file
    handler, nor subclasses such as pytest's capture handlers."""
    return [h for h in logging.getLogger().handlers if type(h) is logging.StreamHandler]


HTTP_LOGGERS = ("httpx", "httpx2", "aiohttp")  # one INFO line per request: to the file always, to the console
# with debug (aiohttp.client: the online engine's, engines/openai/chat.py)


def restore_http_loggers() -> None:
    """Undo what importing vLLM does to the HTTP clients' loggers (it sets them to WARNING for the whole process),
    so their INFO lines reach ``uf-experiments.log`` and, with ``log_level=debug``, the console; the console filter
    keeps them off the console otherwise."""
    for name in HTTP_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)


def configure(level: str = "info", verbose: object = False) -> None:
    """Set the console up for one job: ``level`` is ``log_level`` (``info`` | ``debug``), ``verbose`` is
    ``hydra.verbose``. Called again (several runs in one process), it replaces what it set before."""
    level = str(level).lower()
    if level not in LEVELS:
        raise ValueError(f"log_level={level} is not one of {', '.join(LEVELS)}")
    loud = level == "debug" or bool(verbose)
    _STATE["quiet"] = not loud
    restore_http_loggers()
    for handler in console_handlers():
        for f in [f for f in handler.filters if isinstance(f, ConsoleFilter)]:
            handler.removeFilter(f)
        if not loud:
            handler.addFilter(ConsoleFilter())
    if not verbose:  # hydra.verbose sets the levels itself
        logging.getLogger("uf_experiments").setLevel(logging.DEBUG if level == "debug" else logging.NOTSET)
    if not loud and not any(k in os.environ for k in VLLM_LOGGING_ENV):
        # before vLLM is imported (it configures logging at import): its records go to Hydra's handlers
        os.environ["VLLM_CONFIGURE_LOGGING"] = "0"
    if not loud:
        os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")  # torch's C++ warnings (NUMA binding, per engine)
        for module in THIRD_PARTY_DEPRECATIONS:  # deprecations inside a dependency: nothing for the user to fix
            warnings.filterwarnings("ignore", category=FutureWarning, module=module)

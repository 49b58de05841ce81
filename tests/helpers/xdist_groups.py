"""A pytest plugin (tests/conftest.py loads it): ``--dist loadgroup`` groups tests again under pytest >= 9.2."""

from __future__ import annotations

import pytest


@pytest.hookimpl(trylast=True)  # after pytest-xdist's worker hook, which appends "@GROUP" to item._nodeid
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Make ``--dist loadgroup`` group again under pytest >= 9.2. pytest-xdist 3.8 tells the scheduler a test's group
    by appending ``@GROUP`` to ``item._nodeid`` on the worker, but pytest 9.2 derives ``item.nodeid`` from
    ``item._id``, so the suffix never reached the scheduler: every test was scheduled alone and a file's module
    fixtures (a real run, a loaded vLLM engine, a Ray cluster) were built on both workers. Carry the suffix over."""
    if not getattr(config.option, "loadgroup", False):  # set on pytest-xdist workers under --dist loadgroup
        return
    try:
        from _pytest.nodeid import coerce_node_id
    except ImportError:  # pytest < 9.2: item.nodeid is item._nodeid, nothing to carry over
        return
    for item in items:
        suffixed = getattr(item, "_nodeid", None)
        if suffixed and suffixed != item.nodeid:
            item._id = coerce_node_id(suffixed)

"""``--dist loadgroup`` (``make test``) keeps an xdist group on one worker, so a file's module fixtures are built
once: a real two-worker pytest-xdist session over two files in one group and one spread file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GROUPED = '''import os, pytest
pytestmark = pytest.mark.xdist_group("g")
@pytest.fixture(scope="module")
def built():
    with open(os.environ["LOG"], "a") as f:
        print("built", __name__, file=f)
{tests}
'''


def test_a_group_runs_on_one_worker_and_its_module_fixtures_are_built_once(tmp_path):
    for name in ("a", "b"):
        body = f"    open(os.environ['LOG'], 'a').write(f'ran {name} {{os.getpid()}}\\n')\n"
        tests = "".join(f"def test_{name}{i}(built):\n{body}" for i in range(4))
        (tmp_path / f"test_{name}.py").write_text(GROUPED.replace("{tests}", tests))
    (tmp_path / "test_c.py").write_text("".join(f"def test_c{i}():\n    pass\n" for i in range(12)))
    log = tmp_path / "log"
    env = {**os.environ, "LOG": str(log), "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-p",
                           "tests.helpers.xdist_groups", "-p", "no:cacheprovider", "-q", str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:]
    lines = log.read_text().splitlines()
    assert sorted(ln for ln in lines if ln.startswith("built")) == ["built test_a", "built test_b"]  # once each
    pids = {ln.split()[2] for ln in lines if ln.startswith("ran")}
    assert len([ln for ln in lines if ln.startswith("ran")]) == 8 and len(pids) == 1  # the group on one worker

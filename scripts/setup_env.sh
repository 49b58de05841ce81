#!/usr/bin/env bash
# Create the virtualenv and install uf-experiments with vLLM for CPU (the recipe in DESIGN §10).
#   scripts/setup_env.sh [VENV_DIR]          env: PYTHON, TORCH_INDEX_URL, EXTRAS
# 1. torch==2.13.0 (CPU build) first, from TORCH_INDEX_URL when that index answers (PyTorch's own CPU wheel
#    index by default; on machines without it, pip's configured indexes/wheels are used instead).
# 2. the package with the `cpu`, `dev` and `ray` extras, under a constraint so nothing replaces that torch.
# 3. remove torchvision/torchaudio/torchcodec: their PyPI builds need CUDA and break `import transformers`.
# --no-compile: pip would byte-compile all ~28,000 .py files of the venv (~4 ms each, ~100 s on one core); Python
# compiles the modules a run imports on first import instead (a few thousand) and caches them as usual.
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
"$VENV/bin/python" -c "import torch, vllm, transformers, hydra, wandb; print(f'setup: torch {torch.__version__}, vllm {vllm.__version__}, transformers {transformers.__version__}')"

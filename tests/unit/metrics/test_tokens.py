"""Prompt tokens of a local model counted without transformers (metrics/tokens.py): the same numbers as
transformers' chat template + tokenizer, on a real tiny model."""

from __future__ import annotations

import json
import shutil

import pytest

from uf_experiments.metrics.tokens import light_counter
from uf_experiments.tiny import TinySpec, build_tiny_model

MESSAGES = [
    [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": "Explain tides, please! ünï 123"}],
    [{"role": "user", "content": "<text 1>\nfoo bar\n</text 1>\nRating: 5"}],
    [{"role": "user", "content": ""}],
]


@pytest.fixture(scope="module")
def tiny_dir():
    return build_tiny_model(TinySpec(seed=1))


@pytest.mark.parametrize("messages", MESSAGES)
def test_the_same_count_as_transformers(tiny_dir, messages):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_dir), local_files_only=True)
    text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert light_counter(tiny_dir)(messages) == len(tok(text, add_special_tokens=False)["input_ids"]) > 0


def test_a_template_in_tokenizer_config_and_its_special_tokens(tiny_dir, tmp_path):
    """The older layout: the template as a string in tokenizer_config.json, using a special token variable."""
    shutil.copy(tiny_dir / "tokenizer.json", tmp_path / "tokenizer.json")
    template = "{% for m in messages %}{{ m['content'] + eos_token }}{% endfor %}"
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": template, "eos_token": "<|im_end|>"}))
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    want = len(tok.encode("hi<|im_end|>", add_special_tokens=False).ids)
    assert light_counter(tmp_path)([{"role": "user", "content": "hi"}]) == want


@pytest.mark.parametrize("config", [
    {"chat_template": "{% for m in messages %}{% generation %}{{ m['content'] }}{% endgeneration %}{% endfor %}"},
    {"chat_template": [{"name": "default", "template": "{{ messages }}"}]},  # named templates
    {},  # no template at all
])
def test_what_it_leaves_to_transformers(tiny_dir, tmp_path, config):
    shutil.copy(tiny_dir / "tokenizer.json", tmp_path / "tokenizer.json")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    assert light_counter(tmp_path) is None


def test_no_tokenizer_file(tmp_path):
    assert light_counter(tmp_path) is None

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


ALPHABET = ["a", "bc", "The", " ", " ", "  ", "\n", "\n\n", "\t", "'s", "'ll", "'", "1", "234", ".", ",", "!?", "--",
            "\u00e9", "\u00fc", "\u5317\u4eac", "\u00a0", "\u3000", "\u2003", "\x1c", "\U0001f642", "<|im_start|>",
            "<|im_end|>", "<|endoftext|>", "<", "|", ">", "x"]


def whitespace_tokenizer():
    """A byte-level BPE trained on whitespace-heavy text, so that its vocabulary merges newlines and spaces
    (``"\\n "``, ``"\\n\\n"``, ``"   "``): a cut that split such a piece would change its count (the tiny models'
    vocabulary is too small to notice)."""
    import random

    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    rng = random.Random(3)
    corpus = ["".join(rng.choice(ALPHABET[:18]) for _ in range(80)) for _ in range(400)]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer=trainer)
    assert {"\u010a\u0120", "\u0120\u0120"} <= set(tok.get_vocab())  # "\n " and "  " are tokens of their own
    return tok


@pytest.mark.parametrize("which", ["tiny", "whitespace"])
def test_chunked_counts_equal_whole_text_encoding(tiny_dir, which):
    """The line-by-line, word-by-word count (metrics/tokens.py: each distinct chunk encoded once) is the whole
    text's count, on random text made of what could break a cut: runs of spaces, tabs and newlines, contractions,
    digits, punctuation, non-ASCII letters and spaces, emoji and the special tokens."""
    import random

    from tokenizers import Tokenizer

    from uf_experiments.metrics.tokens import chunked_count

    tok = Tokenizer.from_file(str(tiny_dir / "tokenizer.json")) if which == "tiny" else whitespace_tokenizer()
    count = chunked_count(tok)
    assert count is not None
    rng = random.Random(7)
    texts = ["", " ", "  x", "x  ", "a\n b", "<|im_end|> ok", "it's  1 2", "a\nb", "a\n\nb", ".\n<|im_start|>x\n",
             "x\n", "x\n  y", "a.\n\n b"]
    texts += ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 60))) for _ in range(1500)]
    for text in texts:
        assert count(text) == len(tok.encode(text, add_special_tokens=False).ids), repr(text)
    assert count(texts[-1]) == count(texts[-1])  # the second time from the memo


def test_chunked_count_only_where_it_is_exact(tiny_dir):
    from tokenizers import Tokenizer, normalizers, pre_tokenizers

    from uf_experiments.metrics.tokens import chunked_count

    with_normalizer = Tokenizer.from_file(str(tiny_dir / "tokenizer.json"))
    with_normalizer.normalizer = normalizers.Lowercase()
    other_split = Tokenizer.from_file(str(tiny_dir / "tokenizer.json"))
    other_split.pre_tokenizer = pre_tokenizers.Whitespace()
    assert chunked_count(with_normalizer) is None
    assert chunked_count(other_split) is None

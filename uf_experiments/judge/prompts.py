"""Build one judge request's messages (and JSON schema) for a (prompt, aspect) and n texts in a given order."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any

from uf_experiments.core.records import Message, Prompt


@cache
def load_template(name: str) -> str:
    try:
        return resources.files("uf_experiments.judge.templates").joinpath(name).read_text(encoding="utf-8").strip()
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"judge template '{name}' not found in uf_experiments/judge/templates/") from exc


def world_knowledge(prompt: Prompt) -> str:
    """The reference the paper gave its truthfulness judge, from the dataset's answer columns when present."""
    ex = prompt.extras
    if ex.get("world_knowledge"):
        return str(ex["world_knowledge"])
    parts = []
    if ex.get("correct_answers"):
        parts.append("Correct answers: " + "; ".join(map(str, ex["correct_answers"])))
    if ex.get("incorrect_answers"):
        parts.append("Incorrect answers: " + "; ".join(map(str, ex["incorrect_answers"])))
    if prompt.source == "false_qa" and not parts:
        parts.append("The question is based on a false premise.")
    return "\n".join(parts)


def _text_format(aspect: Any, n: int) -> str:
    scale = f"{aspect.min_rating}-{aspect.max_rating}" + (' or "N/A"' if aspect.allow_na else "")
    lines = []
    for k in range(1, n + 1):
        lines.append(f"#### Output for Text {k}")
        if aspect.has_types:
            lines += ['Type: [list of numeric identifiers, or "None"]', "Rationale: [rationale for the type]"]
        lines += [f"Rating: [rating {scale}]", "Rationale: [rationale for the rating]", ""]
    return "Answer in exactly this format, one section per text, nothing else:\n\n" + "\n".join(lines).rstrip()


def _critique_format(output: str) -> str:
    if output == "json":
        return ('Answer with one JSON object: {"feedback": "<your feedback>", '
                '"overall_score": <an integer from 1 to 10>}.')
    return "Answer in exactly this format:\n\n### Feedback\n[your feedback]\nOverall Score: [1-10]"


def _json_format(aspect: Any, n: int) -> str:
    keys = ", ".join(f'"text_{k}"' for k in range(1, n + 1))
    fields = '"types" (a list of numeric identifiers, empty for none), "type_rationale", ' if aspect.has_types else ""
    na = ' or the string "N/A"' if aspect.allow_na else ""
    return (
        f"Answer with one JSON object whose keys are {keys}. Each value is an object with {fields}"
        f'"rating" (an integer from {aspect.min_rating} to {aspect.max_rating}{na}) and "rationale" (a short string).'
    )


def response_schema(aspect: Any, n: int, rationale_max_chars: int | None = None) -> dict[str, Any]:
    """JSON schema with exactly one entry per text, keyed by the text's label, so a rating is bound to its text.

    ``rationale_max_chars`` caps each rationale (``maxLength``), which keeps a runaway judge, such as a random
    tiny model, inside its token budget; OpenAI's strict mode does not accept it, so API judges leave it unset.
    """
    text: dict[str, Any] = {"type": "string"}
    if rationale_max_chars:
        text["maxLength"] = rationale_max_chars
    if aspect.per_completion:
        score = {"enum": list(range(aspect.min_rating, aspect.max_rating + 1))}
        return {"type": "object", "properties": {"feedback": text, "overall_score": score},
                "required": ["feedback", "overall_score"], "additionalProperties": False}
    scale: list[Any] = list(range(aspect.min_rating, aspect.max_rating + 1))
    rating: dict[str, Any] = {"enum": scale + (["N/A"] if aspect.allow_na else [])}
    props: dict[str, Any] = {}
    if aspect.has_types:
        props["types"] = {"type": "array", "items": {"enum": [1, 2, 3]}, "maxItems": 3}
        props["type_rationale"] = text
    props["rating"] = rating
    props["rationale"] = text
    item = {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}
    keys = [f"text_{k}" for k in range(1, n + 1)]
    return {"type": "object", "properties": {k: item for k in keys}, "required": keys, "additionalProperties": False}


def judge_messages(aspect: Any, prompt: Prompt, texts: Sequence[str], output: str) -> tuple[Message, ...]:
    """System + user messages asking for a rating of each text (texts already in display order)."""
    n = len(texts)
    system = load_template(aspect.system).format(n=n)
    if aspect.per_completion:
        fmt = _critique_format(output)
    else:
        fmt = _json_format(aspect, n) if output == "json" else _text_format(aspect, n)
    parts = [load_template(aspect.template), "## Format", fmt, "## Annotation", f"Instruction: {prompt.instruction}"]
    if aspect.has_types:
        parts.append("World knowledge: " + (world_knowledge(prompt) or "No additional world knowledge for reference."))
    if aspect.per_completion:
        parts.append(f"Response:\n<response>\n{texts[0]}\n</response>")
    else:
        parts.append("Texts:\n" + "\n".join(f"<text {k}>\n{t}\n</text {k}>" for k, t in enumerate(texts, 1)))
    parts.append("### Output")
    return ({"role": "system", "content": system}, {"role": "user", "content": "\n\n".join(parts)})

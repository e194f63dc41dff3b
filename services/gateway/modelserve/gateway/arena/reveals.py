"""Answers that give a model away: a battle in which either answer names either model (its
served name, its family, or its maker) is kept, but its vote does not count, as LMSYS's
arena filters such battles out. The test is deliberately plain and errs on the side of
excluding: "Meta" in an answer excludes a battle with a Llama in it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# Families a served name may belong to (matched at the start of one of its words:
# "Meta-Llama-3.1-8B" is a llama), and the names that give each away: its own and its
# maker's. An answer names a family when the family starts a word (SmolLM2, Llama-3).
FAMILIES: Mapping[str, tuple[str, ...]] = {
    "llama": ("Llama", "Meta"),
    "tinyllama": ("TinyLlama", "Llama"),
    "mistral": ("Mistral",),
    "mixtral": ("Mixtral", "Mistral"),
    "qwen": ("Qwen", "Alibaba", "Tongyi"),
    "gemma": ("Gemma", "Gemini", "Google", "DeepMind"),
    "phi": ("Phi", "Microsoft"),
    "smollm": ("SmolLM", "Hugging Face", "HuggingFace"),
    "gpt": ("GPT", "ChatGPT", "OpenAI"),
    "claude": ("Claude", "Anthropic"),
    "deepseek": ("DeepSeek",),
    "falcon": ("Falcon", "Technology Innovation Institute"),
    "olmo": ("OLMo", "Allen Institute", "AI2"),
    "granite": ("Granite", "IBM"),
    "command": ("Command R", "Cohere"),
    "internlm": ("InternLM", "Shanghai AI Laboratory"),
    "glm": ("ChatGLM", "GLM", "Zhipu"),
    "vicuna": ("Vicuna", "LMSYS"),
}
_WORD = re.compile(r"[a-z]+")


def identity_terms(served_name: str) -> list[str]:
    """What would give away the model served as `served_name`: that name, and the
    names of the families its words begin with, and their makers."""
    terms = [served_name]
    words = [match.group() for match in _WORD.finditer(served_name.lower())]
    for family, names in FAMILIES.items():
        if any(word.startswith(family) for word in words):
            terms += [name for name in names if name not in terms]
    return terms


def _pattern(term: str) -> re.Pattern[str]:
    # Not inside a longer word: "Meta" is not in "metadata", "Phi" not in "philosophy";
    # digits may follow ("SmolLM2", "GPT-4", "Llama3").
    return re.compile(rf"(?<![a-z0-9]){re.escape(term.lower())}(?![a-z])")


def revealed(answers: Mapping[str, Iterable[str]], models: Sequence[str]) -> list[dict[str, str]]:
    """Where an answer names a model: [{"side": "a", "term": "SmolLM"}, ...] for each
    side's answers (`answers["a"]`, `answers["b"]`) and each term of either model."""
    terms: list[str] = []
    for model in models:
        terms += [term for term in identity_terms(model) if term not in terms]
    found: list[dict[str, str]] = []
    for side, texts in answers.items():
        text = "\n".join(texts).lower()
        found += [{"side": side, "term": term} for term in terms if _pattern(term).search(text)]
    return found


def assistant_texts(conversation: Sequence[Mapping[str, Any]]) -> list[str]:
    """The answers of one side of a battle."""
    return [
        str(message.get("content") or "")
        for message in conversation
        if message.get("role") == "assistant"
    ]

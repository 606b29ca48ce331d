"""From a concept phrase to example texts: the user's, or ones the model writes.

Model-written examples are contrasted with model-written texts about unrelated topics produced by the *same*
prompt templates, not with human text: otherwise "sounds like this model's writing" would top every ranking.
Generation is greedy (deterministic); diversity comes from the templates.
"""

from __future__ import annotations

from collections.abc import Sequence

from qscope.errors import InputError

TEMPLATES = (
    "Write a short example of {c}.",
    "Give one typical example of {c}. Only the example, no explanation.",
    "Show me {c}.",
    "Write two sentences that are clearly about {c}.",
    "Produce a short text that a person would write when doing {c}.",
    "Write a paragraph full of {c}.",
    "Write a brief note on {c}.",
    "Give an example sentence related to {c}.",
)

CONTRAST_TOPICS = (
    "cooking dinner",
    "the weather",
    "a football match",
    "a family holiday",
    "gardening",
    "ancient history",
    "a birthday party",
    "buying a car",
    "a walk in the forest",
    "pop music",
    "a job interview",
    "the ocean",
)


def concept_prompts(concept: str, n: int) -> list[str]:
    concept = concept.strip()
    if not concept:
        raise InputError("concept phrase is empty")
    return [TEMPLATES[i % len(TEMPLATES)].format(c=concept) for i in range(n)]


def contrast_prompts(n: int, exclude: str = "") -> list[str]:
    topics = [t for t in CONTRAST_TOPICS if t not in exclude.lower()]
    return [TEMPLATES[i % len(TEMPLATES)].format(c=topics[i % len(topics)]) for i in range(n)]


def write_examples(lm, prompts: Sequence[str], max_new_tokens: int = 48, engine=None) -> list[str]:
    """The model's greedy completions of `prompts` (chat template applied), empty ones dropped."""
    if engine is None:
        from qscope.generation import make_engine

        engine = make_engine("hf", lm=lm)
    results = engine.generate(list(prompts), max_new_tokens=max_new_tokens, temperature=0.0)
    return [r.text.strip() for r in results if r.text.strip()]


def concept_examples(
    lm, concept: str, n: int = 8, max_new_tokens: int = 48, engine=None
) -> tuple[list[str], list[str]]:
    """(positives, negatives): n model-written examples of `concept` and n of unrelated topics."""
    pos = write_examples(lm, concept_prompts(concept, n), max_new_tokens, engine)
    neg = write_examples(lm, contrast_prompts(n, concept), max_new_tokens, engine)
    if len(pos) < 2 or len(neg) < 2:
        raise InputError(f"the model wrote too few usable examples for {concept!r}; pass examples= yourself")
    return pos, neg

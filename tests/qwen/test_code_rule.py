"""The "output contains code" rule of bench/code_steering.py (the steering-toward-code measurement)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def bench(repo_script):
    return repo_script("bench/code_steering.py")


@pytest.mark.parametrize(
    "text",
    [
        "Here you go:\n```python\nprint(1)\n```",
        "def is_even(n):\n    return n % 2 == 0",
        "import math",
        "x = compute(3)",
        "for i in range(3):\n    print(i)",
        "Sure! Use this:\n\n    total = sum(values)\n    print(total)\n\nThat prints the total.",
    ],
)
def test_code_counts(bench, text):
    assert bench.looks_like_code(text)


@pytest.mark.parametrize(
    "text",
    [
        "Paris is the capital of France.",
        "Hello\nWorld",
        "1. Drink water\n2. Sleep well",
        "- sand\n- sea",
        "Note: (see below)",
        "The answer: yes",
        "x and y\nz",
        "Quantum computing uses qubits, which can be 0 and 1 at once.",
    ],
)
def test_prose_does_not(bench, text):
    assert not bench.looks_like_code(text)


def test_prompt_sets_are_disjoint_and_large_enough(bench):
    assert not set(bench.DEV_PROMPTS) & set(bench.TEST_PROMPTS)
    assert len(bench.TEST_PROMPTS) >= 20  # the bar: >= 20 prompts
    assert not any(bench.looks_like_code(p) for p in bench.DEV_PROMPTS + bench.TEST_PROMPTS)

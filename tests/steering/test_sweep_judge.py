"""`strength_sweep` with an honest judge (issue 14, item 4): on-target by the judge, fluency per strength, best
trade-off marked; the CLI builds the judge from concept examples."""

from __future__ import annotations

import json

import numpy as np

from qscope.operators.filter import distinct_word_ratio

CONCEPT = [
    "The ocean waves crashed on the sandy beach.",
    "Sailors crossed the sea in wooden ships.",
    "Whales and dolphins swim in the deep blue ocean.",
    "The tide rose over the rocks by the shore.",
]
NEUTRAL = [
    "The meeting was moved to Tuesday afternoon.",
    "She bought bread and cheese at the market.",
    "The software update fixed several bugs.",
    "He read a book about medieval history.",
]


def test_sweep_reports_the_judge_and_marks_the_best_row(hf_engine, concept_feature):
    from qscope.steering import strength_sweep

    def sea_judge(texts):  # a user-given classifier: scores in [0, 1]
        return np.array(
            [1.0 if any(w in t.lower() for w in ("sea", "ocean", "wave", "ship", "boat")) else 0.0 for t in texts]
        )

    result = strength_sweep(
        hf_engine,
        ["Tell me about your weekend."],
        concept_feature,
        [0.0, 1.0],
        max_new_tokens=10,
        ppl_factor=100.0,
        judge=sea_judge,
    )
    assert result.judge == "sea_judge"
    for r in result.rows:
        assert set(result.ROW_KEYS) <= set(r)
        texts = result.samples[r["strength"]]
        fluent = np.array([distinct_word_ratio(t) >= 0.4 for t in texts])  # degenerate text is never on target
        assert r["on_target_rate"] == ((sea_judge(texts) > 0) & fluent).mean()
        assert 0.0 <= r["distinct_word_ratio"] <= 1.0
    assert result.judge_floor == result.rows[0]["on_target_rate"] and result.to_dict()["judge_floor"] is not None
    assert sum(r["best"] for r in result.rows) == 1
    assert next(r for r in result.rows if r["best"])["strength"] == result.best_strength


def test_without_a_judge_the_sweep_says_it_is_circular(hf_engine, concept_feature):
    from qscope.steering import strength_sweep

    result = strength_sweep(hf_engine, ["Hi."], concept_feature, [0.0], max_new_tokens=4)
    assert "circular" in result.judge and result.rows[0]["on_target_rate"] == result.rows[0]["feature_rate"]
    assert result.judge_floor is None  # no judge, no floor


def test_cli_sweep_with_a_judge_from_examples(tmp_path, steer_sae, cli, concept_feature):
    sae = str(steer_sae.save(tmp_path / "sae"))
    (tmp_path / "pos.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in CONCEPT))
    (tmp_path / "neg.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in NEUTRAL))
    judge = {"judge_examples": tmp_path / "pos.jsonl", "judge_negatives": tmp_path / "neg.jsonl", "judge_kind": "tfidf"}
    prompt = "Tell me about your weekend."
    out = cli("sweep", prompt, sae=sae, feature=concept_feature, strengths="0,1", max_new_tokens=5, **judge)
    assert out["judge"] == "tfidf" and sum(r["best"] for r in out["rows"]) <= 1


def test_default_judge_negatives_include_the_models_ordinary_answers(tmp_path, hf_engine, monkeypatch):
    """Without --judge-negatives the judge's negatives are the background corpus and the unsteered model's own
    answers to everyday prompts (a corpus alone does not look like the model's chat)."""
    from types import SimpleNamespace

    from qscope.cli.sweep import build_judge
    from qscope.evaluation import judges

    answers = judges.ordinary_answers(hf_engine, max_new_tokens=4)
    assert 0 < len(answers) <= len(judges.NEUTRAL_PROMPTS) and all(a.strip() for a in answers)

    seen = {}

    def fit(self, texts, labels, **kw):
        seen["neg"] = [t for t, y in zip(texts, labels) if y == 0]
        return self

    monkeypatch.setattr(judges.TfidfJudge, "fit", fit)
    (tmp_path / "pos.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in CONCEPT))
    args = SimpleNamespace(
        judge=None,
        judge_examples=str(tmp_path / "pos.jsonl"),
        judge_negatives=None,
        judge_kind="tfidf",
        max_new_tokens=4,
        no_chat=False,
    )
    build_judge(args, hf_engine, None)
    assert set(answers) <= set(seen["neg"]) and len(seen["neg"]) >= 200 + len(answers)
    args.judge_negatives = str(tmp_path / "pos.jsonl")  # given negatives are used as they are
    build_judge(args, hf_engine, None)
    assert seen["neg"] == CONCEPT

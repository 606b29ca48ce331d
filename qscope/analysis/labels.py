"""Automatic feature labels, and an honest score of how well a label predicts the feature.

A label is built from two kinds of evidence:
  - input side: the tokens on which the feature fires most strongly in a text sample (top-activating contexts);
  - output side: the tokens its decoder direction promotes / suppresses through the unembedding,
    `W_U · (γ ⊙ W_dec[f])`, where γ is the final RMSNorm weight. The norm's 1/rms factor is a positive scalar per
    token, so it does not change the ranking and is left out; γ is folded in because it rescales each residual
    dimension before the (tied) unembedding and does change which tokens win.
Optionally the LM writes a label from the contexts (`lm_label`, small models write poor ones).

Label quality (`score_label`): a keyword simulator predicts "fires" on every held-out token whose text matches
a word of the label, and we compare with where the feature really fires on texts the label was *not* built from.
Reported: precision, recall and balanced accuracy ((TPR + TNR) / 2; 0.5 = no better than chance). This is a
deliberately simple stand-in for LM-simulated scoring: token-like features score high, context features (which
fire on every token of, say, code) score low even with a good label — the score says the label does not let you
predict *per token*, which is true.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from qscope.errors import InputError

_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_+#.-]*")
_STOP = {
    "the",
    "a",
    "an",
    "of",
    "and",
    "or",
    "to",
    "in",
    "on",
    "for",
    "with",
    "is",
    "are",
    "be",
    "that",
    "this",
    "it",
    "as",
    "by",
    "at",
    "from",
    "words",
    "word",
    "text",
    "texts",
    "token",
    "tokens",
    "about",
    "related",
    "feature",
}


def norm_token(tok: str) -> str:
    return tok.strip().lower()


def show_token(tok: str) -> str:
    """A token as a label shows it: stripped, with whitespace-only tokens made visible."""
    s = tok.strip()
    if s:
        return s
    return "".join({"\n": "⏎", "\t": "⇥"}.get(ch, "␣") for ch in tok)[:4] or "∅"


@dataclass
class FeatureLabel:
    feature: int
    text: str
    activating: list[tuple[str, int]]
    """Tokens at the feature's strongest activations, with how many of those activations fell on each (input side)."""
    promoted: list[tuple[str, float]]
    suppressed: list[tuple[str, float]]
    score: dict | None = None
    lm_text: str | None = None
    lm_score: dict | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


# --- output side ---------------------------------------------------------------------------------------
@torch.no_grad()
def logit_effects(lm, sae, features) -> torch.Tensor:
    """[n_features, vocab] direct logit effect of each feature's decoder row (final-norm γ folded in)."""
    W_dec = sae.W_dec[torch.as_tensor(list(features), dtype=torch.long)].float()
    inner = getattr(lm.model, "model", lm.model)
    norm = getattr(inner, "norm", None)
    if norm is not None and getattr(norm, "weight", None) is not None:
        W_dec = W_dec * norm.weight.float()
    W_U = lm.model.get_output_embeddings().weight.float()  # [vocab, d_model]; tied to the input embedding here
    return W_dec @ W_U.T


def promoted_tokens(lm, sae, feature: int, k: int = 10) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """(promoted, suppressed): the k tokens with the largest / smallest direct logit effect."""
    effects = logit_effects(lm, sae, [feature])[0]
    top = effects.topk(k)
    bottom = (-effects).topk(k)
    dec = lm.tokenizer.decode
    return (
        [(dec([int(i)]), round(float(v), 4)) for v, i in zip(top.values, top.indices)],
        [(dec([int(i)]), round(float(-v), 4)) for v, i in zip(bottom.values, bottom.indices)],
    )


def _wordlike(tok: str) -> bool:
    return bool(_WORD.fullmatch(tok.strip())) and len(tok.strip()) > 1


# --- input side + label text --------------------------------------------------------------------------------
class FeatureLabeler:
    """Labels features of one SAE from a sample's activations (`acts`), scored on a held-out sample.

    Without an explicit `heldout`, the sample's documents are split in two halves (even / odd): labels are
    built from one and scored on the other, so a label never grades itself on the texts it came from.
    """

    def __init__(self, lm, sae, acts, heldout=None, n_contexts: int = 20, n_words: int = 3):
        self.lm, self.sae = lm, sae
        if heldout is None:
            if acts.n_docs < 2:
                raise InputError("labeling needs at least 2 sample texts (one to label from, one to score on)")
            heldout = acts.subset(range(1, acts.n_docs, 2))
            acts = acts.subset(range(0, acts.n_docs, 2))
        self.acts, self.heldout = acts, heldout
        self.n_contexts, self.n_words = n_contexts, n_words
        self._cache: dict[int, FeatureLabel] = {}
        self.vocabulary = {norm_token(t) for doc in acts.tokens + heldout.tokens for t in doc}

    def activating_tokens(self, feature: int) -> list[tuple[str, int]]:
        """Token strings among the feature's strongest firings, with how many of those firings are on each.

        Counted, not summed: one extreme token must not outvote a pattern seen many times.
        """
        rows, vals = self.acts.feature_tokens(feature)
        if len(vals) == 0:
            return []
        order = np.argsort(-vals, kind="stable")[: self.n_contexts * 3]
        docs = self.acts.doc_of(rows[order])
        count: Counter = Counter()
        mass: Counter = Counter()
        shown: dict[str, str] = {}
        for i, d in zip(order, docs):
            tok = self.acts.tokens[d][rows[i] - self.acts.doc_offsets[d]]
            key = norm_token(tok) or tok
            count[key] += 1
            mass[key] += float(vals[i])
            shown.setdefault(key, show_token(tok))
        ranked = sorted(count, key=lambda k: (-count[k], -mass[k], k))[:10]
        return [(shown[k], count[k]) for k in ranked]

    def first_token_share(self, feature: int) -> float:
        """Fraction of the feature's strongest firings that are on the first token of a text."""
        rows, vals = self.acts.feature_tokens(feature)
        if len(vals) == 0:
            return 0.0
        top = rows[np.argsort(-vals, kind="stable")[: self.n_contexts * 3]]
        return float(np.isin(top, self.acts.doc_offsets[:-1]).mean())

    def label(self, feature: int, score: bool = True) -> FeatureLabel:
        feature = self.acts.check_feature(feature)
        if feature in self._cache:
            return self._cache[feature]
        activating = self.activating_tokens(feature)
        promoted, suppressed = promoted_tokens(self.lm, self.sae, feature)
        words_in = [t for t, _ in activating[: self.n_words]]
        # For the label, only promoted tokens that occur in real text: the raw top of W_dec·W_U is often word
        # fragments ("strugg", "ureth") that every direction promotes a little; the tables keep the raw list.
        wide, _ = promoted_tokens(self.lm, self.sae, feature, k=300)
        words_out = [show_token(t) for t, _ in wide if _wordlike(t) and norm_token(t) in self.vocabulary]
        words_out = list(dict.fromkeys(words_out))[: self.n_words]
        if words_in:
            text = ", ".join(words_in) + (f" → {', '.join(words_out)}" if words_out else "")
            if self.first_token_share(feature) > 0.8:  # fires on whatever opens a text: say so, not the words
                text = "start of text: " + text
        else:
            text = f"(silent on the sample) → {', '.join(words_out)}" if words_out else "(silent on the sample)"
        out = FeatureLabel(feature, text, activating, promoted, suppressed)
        if score:
            out.score = score_label(self.heldout, feature, [t for t, _ in activating[: self.n_words]])
        self._cache[feature] = out
        return out

    def lm_label(self, feature: int, max_new_tokens: int = 12) -> FeatureLabel:
        """Add an LM-written label (and its score) to `label(feature)`."""
        lab = self.label(feature)
        contexts = self.acts.top_contexts(feature, n=6, before=12, after=2)
        if not contexts:
            return lab
        lab.lm_text = write_label(self.lm, contexts, [t for t, _ in lab.promoted[:5]], max_new_tokens)
        words = [w for w in _WORD.findall(lab.lm_text or "") if w.lower() not in _STOP]
        lab.lm_score = score_label(self.heldout, feature, words)
        return lab


def score_label(heldout, feature: int, keywords) -> dict:
    """Does "fires where a token matches a keyword" predict the feature on held-out tokens?"""
    keys = {norm_token(k) for k in keywords if norm_token(k)}
    keys |= {k for k in (norm_token(w) for w in keywords) if k}
    fired = np.zeros(heldout.n_tokens, bool)
    rows, _ = heldout.feature_tokens(feature)
    fired[rows] = True
    predicted = np.fromiter(
        (norm_token(t) in keys for doc in heldout.tokens for t in doc), bool, count=heldout.n_tokens
    )
    tp = int((fired & predicted).sum())
    pos, neg = int(fired.sum()), int((~fired).sum())
    tpr = tp / pos if pos else 0.0
    tnr = int((~fired & ~predicted).sum()) / neg if neg else 0.0
    return {
        "balanced_accuracy": round((tpr + tnr) / 2, 4),
        "precision": round(tp / int(predicted.sum()), 4) if predicted.any() else 0.0,
        "recall": round(tpr, 4),
        "heldout_tokens": heldout.n_tokens,
        "heldout_firing": pos,
    }


@torch.no_grad()
def write_label(lm, contexts, promoted: list[str], max_new_tokens: int = 12) -> str:
    """Ask the (instruct) LM for a 1-4 word description of what marked tokens share. Greedy, deterministic."""
    lines = []
    for c in contexts:
        toks = list(c.tokens)
        toks[c.position] = f"[[{toks[c.position]}]]"
        lines.append("- " + "".join(toks).replace("\n", " ").strip())
    prompt = (
        "Each line below marks one word with [[ ]]. What do the marked words have in common? "
        "Answer with at most four words.\n" + "\n".join(lines)
    )
    from qscope.models.text_tokens import chat_prompt_ids, text_token_ids

    tok = lm.tokenizer
    # The contexts are corpus text: special-token strings in them stay text (qscope.models.text_tokens).
    if getattr(tok, "chat_template", None):
        ids = torch.tensor([chat_prompt_ids(tok, prompt)])
    else:
        ids = torch.tensor([text_token_ids(tok, [prompt + "\nAnswer:"], add_special_tokens=True)[0]])
    ids = ids.to(lm.device)
    out = lm.model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=max_new_tokens,
        do_sample=False,
        pad_token_id=tok.pad_token_id,
    )
    text = tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip()
    return text.splitlines()[0].strip(" .\"'") if text else ""

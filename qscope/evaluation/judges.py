"""Judges: classifiers that say whether a text is on target, trained on real labelled text — never the SAE that
steered or filtered it. Scoring a steered output with the SAE that steered it is circular (the steering raised
exactly the activations the score reads); a judge is trained elsewhere and sees only the text.

Two families, so one model's blind spot does not decide a number:

- `TfidfJudge`: word 1-2-gram TF-IDF + logistic regression (lexical; no LM at all).
- `HiddenStateJudge`: logistic regression on the mean-pooled residual stream of an LM at a layer that is not the
  steering SAE's (semantic; by default SmolLM2 layer 8, while the shipped SAE reads layer 15).

Both are fitted with balanced class weights, so `proba >= 0.5` means "more like the positives than the negatives"
whatever the class sizes. `fit` first measures itself by 5-fold cross-validation on the labelled data (AUROC, and
the true / false positive rates at the threshold: prevalence-free, so they transfer to any mix of outputs), then
refits on everything; `validation` keeps those numbers for the report.

    judge = TfidfJudge().fit(texts, labels)              # labels: 1 = on target, 0 = not
    judge.validation                                    # {'auroc': 0.97, 'tpr': 0.9, 'fpr': 0.04, ...}
    judge.on_target(["generated text", ...])            # bool per text
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from qscope.errors import InputError

DEFAULT_JUDGE_LAYER = 8
"""Hidden-state judge layer on SmolLM2-135M (30 layers): far from the shipped SAE's layer 15."""

NEUTRAL_PROMPTS = (
    "Write a short poem about the rain.",
    "Describe your favourite food.",
    "Tell me about a dream you had.",
    "Write a thank-you note to a neighbour.",
    "What is a good way to start the morning?",
    "Describe a quiet evening at home.",
    "Write a short message to a colleague.",
    "Tell me a fun fact.",
    "Describe the view from a window.",
    "Write a few sentences about a garden.",
    "What makes a good friend?",
    "Describe a walk in the park.",
    "Write a birthday wish.",
    "Tell me about your favourite colour.",
    "Describe a cup of coffee.",
    "Write the first line of a story.",
)
"""Everyday prompts whose unsteered answers are a judge's negatives: the model's own plain chat. Trained only on
the concept's texts against a corpus, a judge called such chat "sports" at p 0.6-0.94 (bench/steering_efficacy.py)."""


def ordinary_answers(engine, max_new_tokens: int = 32, chat: bool = True) -> list[str]:
    """The unsteered model's greedy answers to `NEUTRAL_PROMPTS` (empty answers dropped): what its output looks like
    when it is not steered towards anything, as negatives for a judge of steered outputs. For a tone (sentiment,
    politeness) that the model's plain chat already has, such a judge asks "more of it than usual"."""
    results = engine.generate(list(NEUTRAL_PROMPTS), max_new_tokens=max_new_tokens, chat=chat, temperature=0.0)
    return [r.text for r in results if r.text.strip()]


class Judge:
    """Base: subclasses implement `_fit(texts, y)` and `_proba(texts)`."""

    name = "judge"
    threshold = 0.5

    def __init__(self) -> None:
        self.validation: dict = {}
        self._fitted = False

    def fit(
        self,
        texts: Sequence[str],
        labels: Sequence[int],
        folds: int = 5,
        seed: int = 0,
        target_fpr: float | None = None,
    ) -> Judge:
        """Fit on all the data; first, `folds`-fold cross-validation (stratified) measures the judge on data it
        did not see: `validation` = AUROC, TPR and FPR at `threshold` of the out-of-fold probabilities.

        `target_fpr`: set `threshold` from those out-of-fold scores instead of 0.5: the lowest one at which at
        most this fraction of real negatives is called on target. With few positives a balanced logistic
        regression puts 0.5 high (hamradio's TF-IDF judge: recall 0.62 at FPR 0.00), and a judge that misses a
        third of real on-target text cannot certify an on-target rate; a fixed FPR is one rule for every judge
        and niche, and stays prevalence-free."""
        if target_fpr is not None and not 0.0 < target_fpr < 1.0:
            raise InputError(f"target_fpr must be in (0, 1), not {target_fpr}")
        texts, y = list(texts), np.asarray(labels, dtype=int)
        self.threshold = type(self).threshold  # a refit without target_fpr goes back to the class default
        if len(texts) != len(y):
            raise InputError(f"{len(texts)} texts but {len(y)} labels")
        if set(np.unique(y)) != {0, 1}:
            raise InputError("a judge needs positive (1) and negative (0) examples")
        self.validation = {}
        if folds > 1 and min((y == 1).sum(), (y == 0).sum()) >= folds:
            from sklearn.model_selection import StratifiedKFold

            oof = np.zeros(len(y))
            for tr, te in StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y):
                self._fit([texts[i] for i in tr], y[tr])
                oof[te] = self._proba([texts[i] for i in te])
            if target_fpr is not None:
                self.threshold = fpr_threshold(oof[y == 0], target_fpr, oof[y == 1])
            self.validation = judge_metrics(oof, y, self.threshold)
        elif target_fpr is not None:
            raise InputError(f"target_fpr needs cross-validation: at least {max(folds, 2)} texts of each class")
        self._fit(texts, y)
        self.validation.update({"n_pos": int((y == 1).sum()), "n_neg": int((y == 0).sum())})
        self._fitted = True
        return self

    def proba(self, texts: Sequence[str]) -> np.ndarray:
        """P(on target) per text (empty texts score 0)."""
        if not self._fitted:
            raise InputError(f"{self.name} judge is not fitted")
        texts = list(texts)
        out = np.zeros(len(texts), np.float64)
        ok = [i for i, t in enumerate(texts) if isinstance(t, str) and t.strip()]
        if ok:
            out[ok] = self._proba([texts[i] for i in ok])
        return out

    def on_target(self, texts: Sequence[str]) -> np.ndarray:
        return self.proba(texts) >= self.threshold

    def _fit(self, texts: list[str], y: np.ndarray) -> None:
        raise NotImplementedError

    def _proba(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError


def fpr_threshold(negative_scores: np.ndarray, target_fpr: float, positive_scores=None) -> float:
    """A threshold (`score >= threshold` = positive) at which at most `target_fpr` of these negatives pass.

    Without positives: the lowest such, just above the k-th highest negative score, k = floor(target_fpr * n).
    With positives: the midpoint between that bound and the lowest positive it lets through, which catches the
    same positives with a margin on both sides. Where the classes separate (AUROC 1.0 out of fold) the bound sits
    in the negatives' tail, and text unlike either class (a chat model's plain output under a news-topic judge)
    would pass it."""
    neg = np.sort(np.asarray(negative_scores, float))[::-1]
    k = int(np.floor(target_fpr * len(neg)))
    bound = float(neg[-1]) if k >= len(neg) else float(np.nextafter(neg[k], np.inf))
    if positive_scores is None:
        return bound
    caught = np.asarray(positive_scores, float)
    caught = caught[caught >= bound]
    return bound if not len(caught) else float((bound + caught.min()) / 2)


def judge_metrics(p: np.ndarray, y: np.ndarray, threshold: float = 0.5) -> dict:
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y, int)
    hit = np.asarray(p) >= threshold
    return {
        "auroc": round(float(roc_auc_score(y, p)), 4),
        "tpr": round(float(hit[y == 1].mean()), 4),
        "fpr": round(float(hit[y == 0].mean()), 4),
        "threshold": round(float(threshold), 4),
        "n_eval": int(len(y)),
    }


class TfidfJudge(Judge):
    """Word 1-2-gram TF-IDF (sublinear tf) + class-balanced logistic regression."""

    name = "tfidf"

    def __init__(self, C: float = 4.0, max_features: int = 200_000):
        super().__init__()
        self.C, self.max_features = C, max_features

    def _fit(self, texts, y):
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        self.vec = TfidfVectorizer(
            sublinear_tf=True, ngram_range=(1, 2), min_df=2, max_features=self.max_features, strip_accents="unicode"
        )
        x = self.vec.fit_transform(texts)
        self.clf = LogisticRegression(C=self.C, class_weight="balanced", max_iter=3000).fit(x, y)

    def _proba(self, texts):
        return self.clf.predict_proba(self.vec.transform(texts))[:, 1]


class HiddenStateJudge(Judge):
    """Class-balanced logistic regression on standardised mean-pooled residuals of `lm` at `layer`.

    Position 0 (the attention sink) and special tokens are left out of the mean; texts are cut to `max_length`
    tokens. Embeddings are cached on disk by text hash (`cache_dir`, default `$QSCOPE_HOME/judges`), so a judge
    trained on thousands of texts costs the forward pass once per machine.
    """

    name = "hidden"

    def __init__(
        self,
        lm=None,
        layer: int = DEFAULT_JUDGE_LAYER,
        max_length: int = 64,
        C: float = 0.05,
        batch_size: int = 16,
        cache_dir: str | Path | None = None,
        model: str | None = None,
    ):
        super().__init__()
        self._lm, self._model = lm, model
        self.layer, self.max_length, self.C, self.batch_size = int(layer), int(max_length), C, batch_size
        self.cache = EmbeddingCache(cache_dir, self._cache_key()) if cache_dir is not False else None

    @property
    def lm(self):
        if self._lm is None:
            from qscope.models import LanguageModel

            self._lm = LanguageModel.load(self._model)
        return self._lm

    def _cache_key(self) -> str:
        name = self._model or (getattr(self._lm, "name", None) if self._lm is not None else None) or "default"
        return f"{Path(str(name)).name}-L{self.layer}-T{self.max_length}"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        todo = list(range(len(texts)))
        if self.cache is not None:
            found = self.cache.get(texts)
            todo = [i for i, v in enumerate(found) if v is None]
            if not todo:
                return np.stack(found)
        new = mean_pooled_residuals(self.lm, [texts[i] for i in todo], self.layer, self.max_length, self.batch_size)
        if self.cache is not None:
            self.cache.put([texts[i] for i in todo], new)
            found = self.cache.get(texts)
            return np.stack(found)
        out = np.zeros((len(texts), new.shape[1]), np.float32)
        out[todo] = new
        return out

    def _fit(self, texts, y):
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        x = self.embed(texts)
        self.scaler = StandardScaler().fit(x)
        self.clf = LogisticRegression(C=self.C, class_weight="balanced", max_iter=3000).fit(self.scaler.transform(x), y)

    def _proba(self, texts):
        return self.clf.predict_proba(self.scaler.transform(self.embed(texts)))[:, 1]


def mean_pooled_residuals(
    lm, texts: Sequence[str], layer: int, max_length: int = 64, batch_size: int = 16
) -> np.ndarray:
    """[n, d_model] float32: mean of the residual after block `layer` over each text's content tokens."""
    import torch

    special = torch.tensor(sorted(set(lm.tokenizer.all_special_ids)))
    rows = []
    with torch.no_grad():
        for b0 in range(0, len(texts), batch_size):
            batch = [t if t.strip() else "." for t in texts[b0 : b0 + batch_size]]
            res = lm.residuals(batch, [layer], max_length=max_length)
            keep = res.attention_mask.bool().clone()
            keep[:, 0] = False
            keep &= ~torch.isin(res.input_ids, special)
            h = res.hidden[layer].float()
            for i in range(len(batch)):
                hi = h[i][keep[i]]
                if len(hi) == 0:
                    hi = h[i][res.attention_mask[i].bool()][-1:]
                rows.append(hi.mean(0).cpu().numpy())
    return np.stack(rows).astype(np.float32) if rows else np.zeros((0, lm.d_model), np.float32)


class EmbeddingCache:
    """text-hash → vector, one `.npz` per (model, layer, max_length), rewritten atomically on `put`."""

    def __init__(self, cache_dir: str | Path | None, key: str):
        root = (
            Path(cache_dir)
            if cache_dir
            else Path(os.environ.get("QSCOPE_HOME", Path.home() / ".cache" / "qscope")).expanduser() / "judges"
        )
        self.path = root / f"{key}.npz"
        self._map: dict[str, np.ndarray] | None = None

    @staticmethod
    def _h(text: str) -> str:
        return hashlib.sha1(text.encode("utf-8", "replace")).hexdigest()

    def _load(self) -> dict[str, np.ndarray]:
        if self._map is None:
            self._map = {}
            if self.path.exists():
                z = np.load(self.path)
                self._map = dict(zip(z["keys"].tolist(), z["vecs"]))
        return self._map

    def get(self, texts: Sequence[str]) -> list[np.ndarray | None]:
        m = self._load()
        return [m.get(self._h(t)) for t in texts]

    def put(self, texts: Sequence[str], vecs: np.ndarray) -> None:
        m = self._load()
        for t, v in zip(texts, vecs):
            m[self._h(t)] = np.asarray(v, np.float32)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.stem + f".tmp{os.getpid()}.npz")
        np.savez(tmp, keys=np.array(list(m)), vecs=np.stack(list(m.values())))
        os.replace(tmp, self.path)


def judge_panel(texts: Sequence[str], judges: Sequence[Judge]) -> dict:
    """{judge name: on-target bool array} plus "all": on target by every judge."""
    out = {j.name: j.on_target(texts) for j in judges}
    out["all"] = np.logical_and.reduce(list(out.values())) if out else np.zeros(len(list(texts)), bool)
    return out


class SignatureJudge(Judge):
    """The seed classifier (`qscope.classify` probe on pooled SAE signatures) as a judge of generated text: the
    text is re-encoded *unsteered*, and the features in `exclude_features` (the ones that were steered) are
    removed from its signature first, so the verdict rests on everything else the text activates. It reads the
    same SAE, so it is the cheap judge a pipeline can always build from its seeds; the independent judges above
    are what benches report.

        judge = SignatureJudge(lm, sae).fit(examples + negatives, [1] * len(examples) + [0] * len(negatives))
    """

    name = "seed-classifier"

    def __init__(
        self,
        lm,
        sae,
        layer: int | None = None,
        pooling: str = "max",
        top_n: int = 256,
        max_length: int = 64,
        exclude_features=(),
    ):
        super().__init__()
        from qscope.features import FeatureExtractor

        self.sae = sae
        self.layer = sae.cfg.hook_layer if layer is None else int(layer)
        self.extractor = FeatureExtractor.single(lm, sae, self.layer, max_length=max_length)
        self.pooling, self.top_n = pooling, int(top_n)
        self.exclude_features = sorted(int(f) for f in exclude_features)

    def signatures(self, texts: Sequence[str]) -> tuple[list, list]:
        sigs = list(self.extractor.iter_signatures(list(texts), self.pooling, self.top_n, self.layer))
        return [s.feature_ids for s in sigs], [s.feature_values for s in sigs]

    def _fit(self, texts, y):
        from qscope.classify import SignatureClassifier

        fids, vals = self.signatures(texts)
        self.clf = SignatureClassifier(self.sae.d_sae, method="probe").fit(
            fids, vals, ["pos" if v else "neg" for v in y]
        )

    def _proba(self, texts):
        from qscope.classify import without_features

        fids, vals = self.signatures(texts)
        if self.exclude_features:
            fids, vals = without_features(fids, vals, [self.exclude_features] * len(fids))
        res = self.clf.decision_scores(fids, vals)
        return res.scores[:, res.classes.index("pos")]

"""Few-shot classification and mining with SAE signatures (pure library: no Ray).

Signatures become IDF-weighted, L2-normalised sparse vectors (IDF fitted on the corpus being scored plus the
seeds). Three scorers:

- "probe"    — L2 logistic regression on the vectors (class-balanced); the best at 16+ seeds per class.
- "centroid" — cosine to each class's mean seed vector, minus the mean over classes (several classes) or the
               cosine to the background mean (one class).
- "knn"      — mean cosine to the k most similar seeds of each class, minus the mean over classes (one class:
               minus the same for a background sample).

With one class only (mining: positives, no labelled negatives) the corpus itself is the background: "probe"
treats a random corpus sample as negatives (the class is rare, so few of them are really positives).

"probe" also takes a dense view of each text (`dense=`, e.g. its mean hidden state): one regression over the
signature vector next to the standardised dense vector (scaled to norm ~`dense_weight`, so neither view drowns the
other). And it takes the texts (`texts=`): a word / bigram TF-IDF probe of its own, mixed with the first by each
one's cross-validated AUROC on the seeds (`view_weights`). On 15 sae-probes tasks with 16 + 16 seeds, signature +
hidden state + text is >= the best of TF-IDF+LR / hidden-state LR / DiffMean on 10-11 of 15 tasks and never more
than 0.02 below it over three sets of 5 draws (the signature probe alone: 4 of 15; bench/README.md, "Issue 14,
item 5").

Measured on 6 real tasks (bench/efficacy.py; numbers in bench/README.md, "Few-shot classification / mining
efficacy"): "probe" on log1p-weighted **sum-pooled top-256** signatures is the best signature method, on par with
hidden-state LR on the mean and ahead of it, DiffMean and TF-IDF on Debian hamradio mining; with max-pooled top-64
signatures it trails.

    scores = classify_corpus(seed_fids, seed_vals, seed_labels, corpus_fids, corpus_vals, d_sae=8192)
    ranked = mine_corpus(seed_fids, seed_vals, corpus_fids, corpus_vals, d_sae=8192, top=100)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import scipy.sparse as sp

from qscope.errors import InputError
from qscope.index.ragged import as_ragged
from qscope.index.vectors import SignatureVectorizer

METHODS = ("probe", "centroid", "knn")
DEFAULT_METHOD = "probe"
DEFAULT_TRANSFORM = "log1p"  # bench/efficacy.py: >= raw weights on every task (bench/README.md)
TEXT_C = 10.0  # the text view's probe: the TF-IDF+LR baseline's C (bench/efficacy.py)
CV_REPEATS = 3
TEXT_SHARE = 1.0  # the text probe's say relative to its CV merit (bench/README.md, "Issue 14, item 5")


class ClassScores(NamedTuple):
    classes: list[str]
    scores: np.ndarray  # [n, n_classes]; higher = more like that class (probabilities for "probe")

    def best(self) -> np.ndarray:
        return np.asarray(self.classes, dtype=object)[self.scores.argmax(1)]


class MineResult(NamedTuple):
    order: np.ndarray  # corpus row indices, most seed-like first
    scores: np.ndarray  # score of every corpus row (in corpus order)


class SignatureClassifier:
    """Fit on labelled seed signatures, score any signatures.

    method: "probe", "centroid" or "knn"; transform: activation → weight ("raw", "sqrt", "log1p", "binary");
    k: neighbours for "knn"; C: inverse regularisation of the probe; background_size: corpus rows used as
    negatives by the one-class probe; dense_weight: the norm a standardised dense row is scaled to next to the
    (unit-norm) signature vector when `fit` gets a dense view; text_share: how much say the text view's own
    probe gets, relative to its cross-validated merit, when `fit` gets texts (see `_fit_probe`).
    """

    def __init__(
        self,
        d_sae: int,
        method: str = DEFAULT_METHOD,
        transform: str = DEFAULT_TRANSFORM,
        use_idf: bool = True,
        k: int = 5,
        C: float = 1.0,
        background_size: int = 2000,
        seed: int = 0,
        dense_weight: float = 3.0,
        text_share: float = TEXT_SHARE,
    ):
        if method not in METHODS:
            raise InputError(f"unknown classification method {method!r}; choose one of {METHODS}")
        self.d_sae, self.method, self.k, self.C = d_sae, method, k, C
        self.background_size, self.seed = background_size, seed
        self.vectorizer = SignatureVectorizer(d_sae, transform, use_idf)
        self.classes: list[str] = []
        self.dense_weight, self.text_share = float(dense_weight), float(text_share)
        self._dense_mean = self._dense_scale = None  # set when fitted with a dense view
        self._tfidf = None  # set when fitted with texts

    def fit(
        self,
        feature_ids: Any,
        feature_values: Any,
        labels: Sequence[Any],
        background_ids: Any = None,
        background_values: Any = None,
        dense: Any = None,
        background_dense: Any = None,
        texts: Sequence[str] | None = None,
        background_texts: Sequence[str] | None = None,
    ) -> SignatureClassifier:
        """dense / background_dense: an optional dense vector per seed / background row (e.g. the mean hidden
        state); texts / background_texts: the rows' texts (a word / bigram TF-IDF view, its IDF from the
        background and the seeds). "probe" reads them next to the signature; scoring then needs the same views
        of every row."""
        seeds = as_ragged(feature_ids, feature_values, self.d_sae)
        self._dense_mean = self._dense_scale = self._tfidf = None
        labels = np.asarray([str(x) for x in labels], dtype=object)
        if seeds.n_rows == 0:
            raise InputError("no seed signatures given")
        if len(labels) != seeds.n_rows:
            raise InputError(f"{len(labels)} labels for {seeds.n_rows} seed signatures")
        self.classes = sorted(set(labels))
        background = None if background_ids is None else as_ragged(background_ids, background_values, self.d_sae)
        self.vectorizer.fit(seeds)
        if background is not None:
            self.vectorizer.partial_fit(background)
        xs = self.vectorizer.transform_csr(seeds)
        xb = None if background is None else self.vectorizer.transform_csr(background)
        if dense is not None:
            xs, xb = self._fit_dense(xs, dense, xb, background_dense)
        text_views = () if texts is None else self._fit_text(texts, xs.shape[0], xb, background_texts)
        if len(self.classes) == 1 and xb is None:
            raise InputError("one class of seeds needs background signatures (the corpus) to contrast against")
        y = np.array([self.classes.index(c) for c in labels])
        getattr(self, f"_fit_{self.method}")(xs, y, xb, *text_views)
        return self

    # --- the dense view ----------------------------------------------------------------------------------------
    def _fit_dense(self, xs, dense, xb, background_dense):
        """Standardise the dense view (statistics of the background when given: the corpus being scored, else of
        the seeds) and append it to the signature vectors."""
        if self.method != "probe":
            raise InputError(f"a dense view is used by the 'probe' method only (this classifier: {self.method!r})")
        ds = _dense_matrix(dense, xs.shape[0], "seed")
        db = None
        if xb is not None:
            if background_dense is None:
                raise InputError("a dense view of the seeds needs the same view of the background rows")
            db = _dense_matrix(background_dense, xb.shape[0], "background", ds.shape[1])
        ref = db if db is not None and db.shape[0] > 1 else ds
        self._dense_mean = ref.mean(0)
        std = ref.std(0)
        self._dense_scale = np.where(std > 1e-8, 1.0 / np.maximum(std, 1e-8), 0.0) * (
            self.dense_weight / np.sqrt(ds.shape[1])
        )
        return self._with_dense(xs, ds), None if xb is None else self._with_dense(xb, db)

    def _with_dense(self, x, dense_rows: np.ndarray):
        z = (dense_rows - self._dense_mean) * self._dense_scale
        return sp.hstack([x, sp.csr_matrix(z.astype(np.float64))]).tocsr()

    # --- the text view --------------------------------------------------------------------------------------
    def _fit_text(self, texts, n_seeds, xb, background_texts):
        """Fit the TF-IDF vocabulary / IDF on the background and seed texts; (seed rows, background rows)."""
        from sklearn.feature_extraction.text import TfidfVectorizer

        if self.method != "probe":
            raise InputError(f"a text view is used by the 'probe' method only (this classifier: {self.method!r})")
        ts = _text_list(texts, n_seeds, "seed")
        tb = None
        if xb is not None:
            if background_texts is None:
                raise InputError("a text view of the seeds needs the texts of the background rows too")
            tb = _text_list(background_texts, xb.shape[0], "background")
        # word unigrams + bigrams, sublinear tf: the TF-IDF+LR baseline of bench/efficacy.py
        self._tfidf = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=1)
        try:
            self._tfidf.fit((tb or []) + ts)
        except ValueError as e:  # no word anywhere (e.g. only punctuation)
            raise InputError(f"text view: no words to build a vocabulary from ({e})") from None
        return self._tfidf.transform(ts), None if tb is None else self._tfidf.transform(tb)

    # --- scorers -------------------------------------------------------------------------------------------
    def _fit_centroid(self, xs, y, xb, *_):
        cents = np.stack([np.asarray(xs[y == c].mean(0)).ravel() for c in range(len(self.classes))])
        self._centroids = cents / np.maximum(np.linalg.norm(cents, axis=1, keepdims=True), 1e-12)
        self._bg = None
        if xb is not None and len(self.classes) == 1:
            bg = np.asarray(xb.mean(0)).ravel()
            self._bg = bg / max(np.linalg.norm(bg), 1e-12)

    def _score_centroid(self, x):
        s = np.asarray(x @ self._centroids.T)
        if self._bg is not None:
            return s - np.asarray(x @ self._bg)[:, None]
        # several classes: contrast with the other centroids, so each column ranks rows on its own
        return s - s.mean(1, keepdims=True)

    def _fit_knn(self, xs, y, xb, *_):
        if len(self.classes) == 1:  # one class: the background sample votes as a second, hidden class
            rng = np.random.default_rng(self.seed)
            neg = xb[rng.choice(xb.shape[0], min(self.background_size, xb.shape[0]), replace=False)]
            xs, y = sp.vstack([xs, neg]).tocsr(), np.r_[y, np.ones(neg.shape[0], int)]
        self._seed_x, self._seed_y = xs.T.tocsr(), y

    def _score_knn(self, x):
        sims = np.asarray((x @ self._seed_x).todense())  # [n, n_seeds]: few seeds, so exact
        n_cls = int(self._seed_y.max()) + 1
        out = np.zeros((x.shape[0], n_cls), np.float32)
        for c in range(n_cls):
            sc = sims[:, self._seed_y == c]
            kk = min(self.k, sc.shape[1])
            out[:, c] = -np.partition(-sc, kk - 1, axis=1)[:, :kk].mean(1)
        if len(self.classes) == 1:
            return out[:, :1] - out[:, 1:]
        return out - out.mean(1, keepdims=True)

    def _fit_probe(self, xs, y, xb, ts=None, tb=None):
        """One regression over the signature (+ dense) rows; with texts (ts / tb: TF-IDF rows of the seeds /
        background) a second one over the TF-IDF rows, the two mixed by each one's 4-fold CV AUROC over the
        training rows (`view_weights`). A lexical task hands the text probe the say; a task its words do not tell
        apart keeps the joint probe's (bench/README.md, "Issue 14, item 5": one regression over all three views
        could not do both)."""
        if len(self.classes) == 1:
            rng = np.random.default_rng(self.seed)
            neg = rng.choice(xb.shape[0], min(self.background_size, xb.shape[0]), replace=False)
            xs = sp.vstack([xs, xb[neg]]).tocsr()
            ts = None if ts is None else sp.vstack([ts, tb[neg]]).tocsr()
            y = np.r_[np.ones(len(y), int), np.zeros(len(neg), int)]
        self._probe = _logistic(self.C).fit(xs, y)
        self._text_probe = None
        if ts is None:
            return
        self._text_probe = _logistic(TEXT_C).fit(ts, y)
        merit = [_cv_auroc(c, x, y, self.seed) for c, x in ((self.C, xs), (TEXT_C, ts))]
        self._mix = view_weights(*merit, self.text_share)
        # each probe's log-odds standardised over the background (the corpus scored), else the training rows
        ref_x, ref_t = (xs, ts) if xb is None else (xb, tb)
        self._norms = [_mean_std(_log_odds(m, r)) for m, r in ((self._probe, ref_x), (self._text_probe, ref_t))]

    def _score_probe(self, x, t=None):
        if self._text_probe is None:
            p = self._probe.predict_proba(x)
        else:
            probes = (self._probe, self._text_probe)
            z = [(_log_odds(m, r) - mu) / sd for m, r, (mu, sd) in zip(probes, (x, t), self._norms)]
            p = 1.0 / (1.0 + np.exp(-(self._mix[0] * z[0] + self._mix[1] * z[1]) / self._mix.sum()))
        return p[:, 1:2] if len(self.classes) == 1 else p

    @property
    def uses_dense(self) -> bool:
        """Fitted with a dense view: scoring needs it too."""
        return self._dense_mean is not None

    @property
    def uses_text(self) -> bool:
        """Fitted with texts: scoring needs them too."""
        return self._tfidf is not None

    def decision_scores(
        self, feature_ids: Any, feature_values: Any = None, dense: Any = None, texts: Sequence[str] | None = None
    ) -> ClassScores:
        if not self.classes:
            raise InputError("the classifier is not fitted")
        x = self.vectorizer.transform_csr(as_ragged(feature_ids, feature_values, self.d_sae))
        if self.uses_dense:
            if dense is None:
                raise InputError("this classifier was fitted with a dense view: score with dense= as well")
            x = self._with_dense(x, _dense_matrix(dense, x.shape[0], "scored", len(self._dense_mean)))
        elif dense is not None:
            raise InputError("this classifier was fitted without a dense view: refit with dense= to use one")
        if self.uses_text:
            if texts is None:
                raise InputError("this classifier was fitted with texts: score with texts= as well")
            t = self._tfidf.transform(_text_list(texts, x.shape[0], "scored"))
            return ClassScores(list(self.classes), np.asarray(self._score_probe(x, t), np.float32))
        if texts is not None:
            raise InputError("this classifier was fitted without texts: refit with texts= to use them")
        return ClassScores(list(self.classes), np.asarray(getattr(self, f"_score_{self.method}")(x), np.float32))


def view_weights(joint_auroc: float, text_auroc: float, text_share: float = TEXT_SHARE) -> np.ndarray:
    """The say of the joint (signature + dense) probe and of the text probe, from their cross-validated AUROC on the
    seeds: max(AUROC - 0.5, 0)^2 each, the text probe's times `text_share`. Only the joint probe has a floor: when
    the seeds' CV cannot tell the words apart from chance (AUROC <= 0.5, common with 16 seeds a class on a task
    whose words carry nothing) the text probe gets no say, and when neither view clears chance the joint probe
    decides alone — a 50/50 mix there handed half the score to noise (twt_worry: -0.022 / -0.031 below the
    hidden-state LR; with the floor on the joint probe only, -0.002 / -0.008; bench/README.md)."""
    return np.array([max(joint_auroc - 0.5, 0.0) ** 2 + 1e-3, max(text_auroc - 0.5, 0.0) ** 2 * text_share])


def _dense_matrix(rows: Any, n: int, what: str, width: int | None = None) -> np.ndarray:
    m = np.asarray(rows, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != n:
        raise InputError(f"dense view of the {what} rows: expected {n} rows of one width, got shape {m.shape}")
    if width is not None and m.shape[1] != width:
        raise InputError(f"dense view of the {what} rows is {m.shape[1]} wide; the classifier was fitted on {width}")
    if not np.isfinite(m).all():
        raise InputError(f"dense view of the {what} rows has NaN or infinite values")
    return m


def _logistic(C: float):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C, class_weight="balanced", max_iter=1000)


def _log_odds(model, x) -> np.ndarray:
    p = np.clip(model.predict_proba(x), 1e-9, 1 - 1e-9)
    return np.log(p / (1 - p))


def _mean_std(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return scores.mean(0), np.maximum(scores.std(0), 1e-9)


def _cv_auroc(C: float, x, y: np.ndarray, seed: int, folds: int = 4, repeats: int = CV_REPEATS) -> float:
    """Mean held-out one-vs-rest AUROC of `_logistic(C)` over `repeats` x `folds` class-stratified folds of (x, y)
    (with 16 seeds a class one split is noisy: the mix it sets moved AUROC by a few points between splits)."""

    rng = np.random.default_rng(seed)
    aucs = []
    for _ in range(repeats):
        fold = np.zeros(len(y), int)
        for c in np.unique(y):
            idx = np.flatnonzero(y == c)
            fold[idx] = rng.permutation(len(idx)) % folds
        aucs += _fold_aucs(C, x, y, fold, folds)
    return float(np.mean(aucs)) if aucs else 0.5


def _fold_aucs(C: float, x, y: np.ndarray, fold: np.ndarray, folds: int) -> list[float]:
    from sklearn.metrics import roc_auc_score

    aucs = []
    for f in range(folds):
        fit, held = fold != f, fold == f
        if len(np.unique(y[fit])) < len(np.unique(y)) or len(np.unique(y[held])) < 2:
            continue  # a class with fewer rows than folds: this fold cannot be scored
        p = _logistic(C).fit(x[fit], y[fit]).predict_proba(x[held])
        aucs += [roc_auc_score(y[held] == c, p[:, c]) for c in np.unique(y[held])]
    return aucs


def _text_list(texts: Any, n: int, what: str) -> list[str]:
    out = list(texts)
    if len(out) != n:
        raise InputError(f"text view: {len(out)} texts for {n} {what} rows")
    if any(not isinstance(t, str) for t in out):
        raise InputError(f"text view: every {what} row needs a text (found a missing or non-string one)")
    return out


def classify_corpus(
    seed_feature_ids: Any,
    seed_feature_values: Any,
    seed_labels: Sequence[Any],
    corpus_feature_ids: Any,
    corpus_feature_values: Any,
    d_sae: int,
    **kw,
) -> ClassScores:
    """One score per corpus row and class (IDF and background from the corpus). kw: see SignatureClassifier."""
    corpus = as_ragged(corpus_feature_ids, corpus_feature_values, d_sae)
    if corpus.n_rows == 0:
        raise InputError("the corpus has no signatures")
    clf = SignatureClassifier(d_sae, **kw).fit(seed_feature_ids, seed_feature_values, seed_labels, corpus)
    return clf.decision_scores(corpus)


def mine_corpus(
    seed_feature_ids: Any,
    seed_feature_values: Any,
    corpus_feature_ids: Any,
    corpus_feature_values: Any,
    d_sae: int,
    top: int | None = None,
    **kw,
) -> MineResult:
    """Rank corpus rows by similarity to positive-only seeds (the corpus is the background)."""
    seeds = as_ragged(seed_feature_ids, seed_feature_values, d_sae)
    scores = classify_corpus(
        seeds, None, ["seed"] * seeds.n_rows, corpus_feature_ids, corpus_feature_values, d_sae, **kw
    ).scores[:, 0]
    order = np.lexsort((np.arange(len(scores)), -scores))
    return MineResult(order[:top] if top is not None else order, scores)


# --- a cut-off for a stated precision (mining) ---------------------------------------------------------------
class CutoffEstimate(NamedTuple):
    """A score cut-off chosen for a target precision from held-out scores (see `precision_cutoff`)."""

    cutoff: float
    """Keep rows with score >= cutoff (inf when no cut-off reaches the target: keep nothing)."""
    target_precision: float
    est_precision: float
    """Estimated precision of the rows kept at `cutoff` (nan when nothing is kept)."""
    est_recall: float
    """Share of the seeds' held-out scores at or above `cutoff` (recall, if corpus positives resemble the seeds)."""
    est_pass_fraction: float
    """Share of the background (a uniform corpus sample) at or above `cutoff`: expected yield / corpus size."""
    est_prevalence: float
    """Estimated share of the corpus that belongs with the seeds."""
    reached: bool
    """False when no cut-off reaches the target: `cutoff` is then the most precise one found."""

    def to_dict(self) -> dict:
        return {
            k: (round(float(v), 4) if isinstance(v, (float, np.floating)) else v) for k, v in self._asdict().items()
        }


def precision_cutoff(
    pos_scores: Any, background_scores: Any, target_precision: float = 0.8, min_recall: float = 0.1, min_count: int = 5
) -> CutoffEstimate:
    """The lowest score cut-off whose estimated precision on the corpus is >= `target_precision`.

    Inputs are held-out scores (each row scored by a classifier that did not train on it): `pos_scores` of the
    seeds (labelled positives) and `background_scores` of a uniform corpus sample (unlabelled: a mix of positives
    at an unknown prevalence pi and negatives). With r(t) = share of seeds >= t and b(t) = share of background
    >= t, b(t) = pi r(t) + (1 - pi) fpr(t), so precision(t) = pi r(t) / b(t) and pi <= b(t) / r(t) at every t.
    pi is estimated by that bound's minimum over cut-offs that keep >= `min_recall` of the seeds and >= `min_count`
    background rows (tight where precision is ~1; the positive-unlabelled "best bin" estimate), with one
    pseudo-count in the background so a cut-off above every background row does not imply pi = 0. The cut-off is
    the lowest one whose estimated precision reaches the target (low cut-offs are measured on many rows). Assumes
    the seeds look like the corpus's positives (positives "selected completely at random"); with 20 seeds recall
    moves in steps of 0.05, so read the estimates as estimates.
    """
    if not 0.0 < target_precision <= 1.0:
        raise InputError(f"target precision must be in (0, 1], got {target_precision}")
    pos = np.sort(np.asarray(pos_scores, np.float64))
    bg = np.sort(np.asarray(background_scores, np.float64))
    if len(pos) == 0 or len(bg) == 0:
        raise InputError("a precision cut-off needs held-out scores of seeds and of background rows")
    cands = np.unique(np.r_[pos, bg])[::-1]  # every score is a candidate cut-off, highest first
    recall = 1.0 - np.searchsorted(pos, cands, side="left") / len(pos)
    bg_pass = (len(bg) - np.searchsorted(bg, cands, side="left") + 1.0) / (len(bg) + 1.0)
    ok = recall >= min_recall
    if not ok.any():
        ok[-1] = True
    n_above = bg_pass * (len(bg) + 1.0) - 1.0
    est = ok & (n_above >= min_count)  # ratios over a handful of rows are noise, and their minimum is biased low
    sel = est if est.any() else ok
    prevalence = float(min(1.0, np.min(bg_pass[sel] / recall[sel])))
    precision = np.minimum(1.0, prevalence * recall / bg_pass)
    # the lowest cut-off that reaches the target: low cut-offs are where both rates are measured on many rows
    cand = np.flatnonzero(ok)
    reaching = precision[cand] >= target_precision
    if reaching.any():
        i = int(cand[np.flatnonzero(reaching)[-1]])
        reached = True
    else:
        i = int(cand[np.argmax(precision[cand])])
        reached = False
    cut = float(cands[i])
    return CutoffEstimate(
        cut,
        float(target_precision),
        float(precision[i]),
        float(recall[i]),
        float((bg >= cut).mean()),
        prevalence,
        reached,
    )


def heldout_scores(
    seed_feature_ids: Any,
    seed_feature_values: Any,
    background_ids: Any,
    background_values: Any,
    d_sae: int,
    folds: int = 5,
    seed: int = 0,
    dense: Any = None,
    background_dense: Any = None,
    texts: Sequence[str] | None = None,
    background_texts: Sequence[str] | None = None,
    **kw,
) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold one-class scores: seeds and background are split into `folds` parts; each part is scored by a
    classifier (`SignatureClassifier(**kw)`) fitted on the other parts' seeds against the other parts'
    background (with their dense / text views when given). Returns (seed scores, background scores), in input
    order."""
    seeds = as_ragged(seed_feature_ids, seed_feature_values, d_sae)
    bg = as_ragged(background_ids, background_values, d_sae)
    n_s, n_b = seeds.n_rows, bg.n_rows
    folds = max(2, min(int(folds), n_s))
    if n_s < 2 or n_b < folds:
        raise InputError(f"held-out scores need >= 2 seeds and >= {folds} background rows (got {n_s}, {n_b})")
    rng = np.random.default_rng(seed)
    fs = rng.permutation(np.arange(n_s) % folds)
    fb = rng.permutation(np.arange(n_b) % folds)
    out_s, out_b = np.zeros(n_s), np.zeros(n_b)
    seed_fids, seed_vals = _rows(seeds)
    bg_fids, bg_vals = _rows(bg)
    ds = None if dense is None else np.asarray(dense, np.float64)
    db = None if background_dense is None else np.asarray(background_dense, np.float64)
    ts = None if texts is None else np.asarray(list(texts), dtype=object)
    tb = None if background_texts is None else np.asarray(list(background_texts), dtype=object)

    def rows(m, idx):
        return None if m is None else m[idx]

    for f in range(folds):
        fit_s, fit_b = np.flatnonzero(fs != f), np.flatnonzero(fb != f)
        clf = SignatureClassifier(d_sae, **kw).fit(
            [seed_fids[i] for i in fit_s],
            [seed_vals[i] for i in fit_s],
            ["seed"] * len(fit_s),
            [bg_fids[i] for i in fit_b],
            [bg_vals[i] for i in fit_b],
            rows(ds, fit_s),
            rows(db, fit_b),
            rows(ts, fit_s),
            rows(tb, fit_b),
        )
        hs, hb = np.flatnonzero(fs == f), np.flatnonzero(fb == f)
        out_s[hs] = clf.decision_scores(
            [seed_fids[i] for i in hs], [seed_vals[i] for i in hs], rows(ds, hs), rows(ts, hs)
        ).scores[:, 0]
        out_b[hb] = clf.decision_scores(
            [bg_fids[i] for i in hb], [bg_vals[i] for i in hb], rows(db, hb), rows(tb, hb)
        ).scores[:, 0]
    return out_s, out_b


def _rows(r) -> tuple[list, list]:
    """Per-row (ids, values) arrays of a ragged batch."""
    return [r.row(i)[0] for i in range(r.n_rows)], [r.row(i)[1] for i in range(r.n_rows)]


def without_features(feature_ids: Any, feature_values: Any, exclude: Sequence[Sequence[int]]) -> tuple[list, list]:
    """Each row's signature without the latents in its `exclude` list (e.g. the features a generated sample was
    steered with, so a score reads what the text says rather than what the steering put there)."""
    r = as_ragged(feature_ids, feature_values)
    if len(exclude) != r.n_rows:
        raise InputError(f"{len(exclude)} exclusion lists for {r.n_rows} signatures")
    fids, vals = [], []
    for i, ex in enumerate(exclude):
        f, v = r.row(i)
        keep = ~np.isin(f, np.asarray(list(ex or []), np.int64))
        fids.append(f[keep])
        vals.append(v[keep])
    return fids, vals

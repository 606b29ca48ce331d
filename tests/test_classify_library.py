"""Few-shot classification and mining on signatures."""

from __future__ import annotations

import numpy as np
import pytest

from qscope.classify import METHODS, SignatureClassifier, classify_corpus, mine_corpus, view_weights
from qscope.errors import InputError

D = 2048


def corpus(n: int, seed: int, n_classes: int = 3, signal: int = 8):
    """Class c has `signal` latents from its own block of 20; all docs get 20 shared Zipfian latents."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, 800 + 1)
    p /= p.sum()
    fids, vals, labels = [], [], []
    for _ in range(n):
        c = int(rng.integers(0, n_classes))
        f = np.unique(np.r_[800 + 20 * c + rng.choice(20, signal, replace=False), rng.choice(800, 20, p=p)])
        fids.append(f)
        vals.append(rng.lognormal(0, 0.5, len(f)).astype(np.float32))
        labels.append(f"c{c}")
    return fids, vals, np.array(labels)


def auroc(scores, positive):
    from sklearn.metrics import roc_auc_score

    return roc_auc_score(positive, scores)


@pytest.mark.parametrize("method", METHODS)
def test_multiclass_few_shot(method):
    f, v, y = corpus(600, 0)
    seeds = np.concatenate([np.flatnonzero(y == c)[:8] for c in ("c0", "c1", "c2")])
    out = classify_corpus([f[i] for i in seeds], [v[i] for i in seeds], y[seeds], f, v, D, method=method)
    assert out.classes == ["c0", "c1", "c2"] and out.scores.shape == (600, 3)
    assert (out.best() == y).mean() > 0.9
    for c, name in enumerate(out.classes):
        assert auroc(out.scores[:, c], y == name) > 0.95


@pytest.mark.parametrize("method", METHODS)
def test_mining_positive_seeds_only(method):
    f, v, y = corpus(1500, 1, n_classes=10)
    pos = np.flatnonzero(y == "c3")
    seeds, rest = pos[:8], np.setdiff1d(np.arange(1500), pos[:8])
    res = mine_corpus(
        [f[i] for i in seeds],
        [v[i] for i in seeds],
        [f[i] for i in rest],
        [v[i] for i in rest],
        D,
        top=50,
        method=method,
    )
    truth = y[rest] == "c3"
    assert auroc(res.scores, truth) > 0.95
    assert truth[res.order[:20]].mean() > 0.8
    assert len(res.order) == 50


def test_classifier_errors():
    f, v, y = corpus(20, 2)
    with pytest.raises(InputError, match="method"):
        SignatureClassifier(D, method="svm")
    with pytest.raises(InputError, match="labels"):
        SignatureClassifier(D).fit(f, v, y[:5])
    with pytest.raises(InputError, match="background"):
        SignatureClassifier(D).fit(f, v, ["x"] * 20)
    with pytest.raises(InputError, match="not fitted"):
        SignatureClassifier(D).decision_scores(f, v)
    with pytest.raises(InputError, match="corpus"):
        classify_corpus(f, v, y, [], [], D)


def test_probe_with_a_dense_view_reads_what_the_signature_misses():
    """Signatures carry half the signal (class c0 vs c1) and a dense vector the other half (a second, hidden
    attribute): the joint probe ranks by both, the signature alone only by its own."""
    f, v, y = corpus(400, 3, n_classes=2)
    rng = np.random.default_rng(3)
    attr = rng.integers(0, 2, 400)  # hidden attribute, only visible in the dense view
    dense = rng.normal(0, 1, (400, 32)) + 2.0 * attr[:, None] * (np.arange(32) < 8)
    target = (y == "c1") & (attr == 1)
    seeds = np.r_[np.flatnonzero(target)[:16], np.flatnonzero(~target)[:16]]
    labels = np.where(target[seeds], "yes", "no")
    # both views carry half the signal here, so they get equal say (the default 3.0 suits real hidden states)
    kw = dict(method="probe", transform="log1p", C=3.0, dense_weight=1.0)
    joint = SignatureClassifier(D, **kw).fit(
        [f[i] for i in seeds], [v[i] for i in seeds], labels, f, v, dense=dense[seeds], background_dense=dense
    )
    sig = SignatureClassifier(D, **kw).fit([f[i] for i in seeds], [v[i] for i in seeds], labels, f, v)
    j = joint.decision_scores(f, v, dense)
    s = sig.decision_scores(f, v)
    auc_joint = auroc(j.scores[:, j.classes.index("yes")], target)
    auc_sig = auroc(s.scores[:, s.classes.index("yes")], target)
    assert auc_joint > 0.9 and auc_joint > auc_sig + 0.05, (auc_joint, auc_sig)
    # one class (mining): the background sample's dense rows are the negatives' dense rows
    one = SignatureClassifier(D, **kw).fit(
        [f[i] for i in seeds[:16]], [v[i] for i in seeds[:16]], ["yes"] * 16, f, v, dense[seeds[:16]], dense
    )
    assert auroc(one.decision_scores(f, v, dense).scores[:, 0], target) > 0.85


def test_dense_view_errors():
    f, v, y = corpus(40, 4)
    dense = np.ones((40, 8))
    with pytest.raises(InputError, match="'probe' method only"):
        SignatureClassifier(D, method="centroid").fit(f, v, y, dense=dense)
    with pytest.raises(InputError, match="same view of the background"):
        SignatureClassifier(D).fit(f, v, y, f, v, dense=dense)
    with pytest.raises(InputError, match="expected 40 rows"):
        SignatureClassifier(D).fit(f, v, y, dense=dense[:5])
    bad = dense.copy()
    bad[0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        SignatureClassifier(D).fit(f, v, y, dense=bad)
    fitted = SignatureClassifier(D).fit(f, v, y, dense=np.random.default_rng(0).normal(size=(40, 8)))
    with pytest.raises(InputError, match="score with dense"):
        fitted.decision_scores(f, v)
    with pytest.raises(InputError, match="fitted on 8"):
        fitted.decision_scores(f, v, np.ones((40, 9)))
    with pytest.raises(InputError, match="without a dense view"):
        SignatureClassifier(D).fit(f, v, y).decision_scores(f, v, dense)
    assert fitted.decision_scores(f, v, np.zeros((40, 8))).scores.shape == (40, 3)


WORDS = "river stone cloud paper lamp garden window engine coffee ladder pencil violin orbit canvas harbor".split()
TOPIC_WORDS = ("zebra lion giraffe hippo rhino".split(), "quartz granite basalt marble slate".split())


def topic_texts(topic: np.ndarray, seed: int) -> list[str]:
    """Eight filler words per text; a row of topic t > 0 also carries three words of TOPIC_WORDS[t - 1]."""
    rng = np.random.default_rng(seed)
    out = []
    for t in topic:
        words = list(rng.choice(WORDS, 8))
        for w in rng.choice(TOPIC_WORDS[t - 1], 3, replace=False) if t else []:
            words.insert(int(rng.integers(0, len(words) + 1)), w)
        out.append(" ".join(words))
    return out


def test_probe_with_a_text_view_separates_a_lexical_task_the_signature_misses():
    """The label is the topic of the words, invisible to the signatures (their classes are unrelated to it): the
    probe with texts separates it, the signature probe does not, for labelled seeds and for mining alike."""
    f, v, _ = corpus(300, 5, n_classes=2)
    topic = np.random.default_rng(5).integers(0, 2, 300)
    texts = topic_texts(topic, 5)
    seeds = np.r_[np.flatnonzero(topic == 1)[:16], np.flatnonzero(topic == 0)[:16]]
    labels = np.where(topic[seeds] == 1, "yes", "no")
    seed_texts = [texts[i] for i in seeds]
    both = SignatureClassifier(D, C=3.0).fit(
        [f[i] for i in seeds], [v[i] for i in seeds], labels, f, v, texts=seed_texts, background_texts=texts
    )
    sig = SignatureClassifier(D, C=3.0).fit([f[i] for i in seeds], [v[i] for i in seeds], labels, f, v)
    assert both.uses_text and not sig.uses_text
    r, s = both.decision_scores(f, v, texts=texts), sig.decision_scores(f, v)
    auc_text = auroc(r.scores[:, r.classes.index("yes")], topic == 1)
    auc_sig = auroc(s.scores[:, s.classes.index("yes")], topic == 1)
    assert auc_text > 0.95 and auc_sig < 0.7, (auc_text, auc_sig)
    # one class (mining): a corpus where the topic is rare (10%) is the background, its texts the negatives' texts
    pos = seeds[:16]
    corp = np.r_[np.flatnonzero(topic == 0), np.flatnonzero(topic == 1)[16:31]]
    one = SignatureClassifier(D, C=3.0).fit(
        [f[i] for i in pos],
        [v[i] for i in pos],
        ["yes"] * 16,
        [f[i] for i in corp],
        [v[i] for i in corp],
        texts=[texts[i] for i in pos],
        background_texts=[texts[i] for i in corp],
    )
    mined = one.decision_scores([f[i] for i in corp], [v[i] for i in corp], texts=[texts[i] for i in corp])
    assert auroc(mined.scores[:, 0], topic[corp] == 1) > 0.95


def test_text_view_with_several_classes_and_a_dense_view():
    """Three classes told apart by their words (the third: no topic words) and, noisily, by a dense view."""
    f, v, _ = corpus(240, 6, n_classes=2)
    topic = np.random.default_rng(6).integers(0, 3, 240)
    texts = topic_texts(topic, 6)
    dense = np.random.default_rng(7).normal(size=(240, 16))
    dense[np.arange(240), topic] += 3.0  # the hidden state knows the topic too
    seeds = np.concatenate([np.flatnonzero(topic == t)[:12] for t in range(3)])
    names = np.array(["none", "animals", "rocks"])
    clf = SignatureClassifier(D, C=3.0).fit(
        [f[i] for i in seeds],
        [v[i] for i in seeds],
        names[topic[seeds]],
        f,
        v,
        dense=dense[seeds],
        background_dense=dense,
        texts=[texts[i] for i in seeds],
        background_texts=texts,
    )
    pred = clf.decision_scores(f, v, dense, texts).best()
    rest = np.setdiff1d(np.arange(240), seeds)
    assert (pred[rest] == names[topic[rest]]).mean() > 0.93


def test_text_view_errors():
    f, v, y = corpus(30, 8)
    texts = [f"word{i} other" for i in range(30)]
    with pytest.raises(InputError, match="'probe' method only"):
        SignatureClassifier(D, method="knn").fit(f, v, y, texts=texts)
    with pytest.raises(InputError, match="texts of the background"):
        SignatureClassifier(D).fit(f, v, y, f, v, texts=texts)
    with pytest.raises(InputError, match="5 texts for 30 seed rows"):
        SignatureClassifier(D).fit(f, v, y, texts=texts[:5])
    with pytest.raises(InputError, match="needs a text"):
        SignatureClassifier(D).fit(f, v, y, texts=[None] + texts[1:])
    with pytest.raises(InputError, match="no words"):
        SignatureClassifier(D).fit(f, v, y, texts=["!"] * 30)
    fitted = SignatureClassifier(D).fit(f, v, y, texts=texts)
    with pytest.raises(InputError, match="score with texts"):
        fitted.decision_scores(f, v)
    with pytest.raises(InputError, match="without texts"):
        SignatureClassifier(D).fit(f, v, y).decision_scores(f, v, texts=texts)
    assert fitted.decision_scores(f, v, texts=["unseen words only"] * 30).scores.shape == (30, 3)


def test_view_weights_give_the_words_no_say_at_chance():
    """The text probe weighs in by how far its CV AUROC clears chance; at or below chance it gets nothing, and when
    neither view clears chance the joint probe decides alone (not a 50/50 mix with noise)."""
    joint, text = view_weights(0.45, 0.48)
    assert joint > 0 and text == 0
    assert view_weights(0.8, 0.5)[1] == 0
    joint, text = view_weights(0.6, 0.9)
    assert text > 10 * joint  # a lexical task: the words decide
    assert view_weights(0.6, 0.9, text_share=2.0)[1] == pytest.approx(2 * text)
    assert view_weights(0.9, 0.6)[0] > 10 * view_weights(0.9, 0.6)[1]


def test_heldout_scores_read_the_text_view():
    """Out-of-fold mining scores with texts: held-out topic seeds outscore the background's off-topic rows."""
    from qscope.classify import heldout_scores

    f, v, _ = corpus(200, 9, n_classes=2)
    topic = np.random.default_rng(9).integers(0, 2, 200)
    texts = topic_texts(topic, 9)
    pos = np.flatnonzero(topic == 1)[:20]
    corp = np.r_[np.flatnonzero(topic == 0), np.flatnonzero(topic == 1)[20:30]]  # the topic is rare here
    s, b = heldout_scores(
        [f[i] for i in pos],
        [v[i] for i in pos],
        [f[i] for i in corp],
        [v[i] for i in corp],
        D,
        folds=4,
        C=3.0,
        texts=[texts[i] for i in pos],
        background_texts=[texts[i] for i in corp],
    )
    assert s.shape == (20,) and b.shape == (len(corp),)
    off = b[topic[corp] == 0]
    assert auroc(np.r_[s, off], np.r_[np.ones(20), np.zeros(len(off))]) > 0.9

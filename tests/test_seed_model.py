"""SeedModel with the probe's text view: which views it reads, save / load, old saved models, clear errors."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_classify_library import D, auroc, corpus, topic_texts

from qscope.errors import InputError
from qscope.operators import Classify
from qscope.seed_model import SeedModel, SeedSignatures, background_sample, seed_scores
from qscope.signatures import SignatureMeta

META = SignatureMeta("test-lm", "test-sae", 3, "sum", 64, D)
META_DENSE = SignatureMeta("test-lm", "test-sae", 3, "sum", 64, D, hidden_mean=True)


def encoded(n: int, seed: int, topic_rate: float = 0.5, dense: bool = False) -> tuple[pa.Table, np.ndarray]:
    """Encoded rows whose signatures (and hidden means, dense=True) carry nothing about the topic; the text does."""
    f, v, _ = corpus(n, seed, n_classes=2)
    topic = (np.random.default_rng(seed).random(n) < topic_rate).astype(int)
    table = pa.table(
        {
            "id": [f"r{seed}-{i}" for i in range(n)],
            "text": topic_texts(topic, seed),
            "feature_ids": pa.array([x.tolist() for x in f], pa.list_(pa.int32())),
            "feature_values": pa.array([x.tolist() for x in v], pa.list_(pa.float32())),
        }
    )
    if dense:
        hidden = np.random.default_rng(seed + 1).normal(size=(n, 8)).tolist()
        table = table.append_column("hidden_mean", pa.array(hidden, pa.list_(pa.float32())))
    return table, topic


def seed_table(n_per_class: int = 16, seed: int = 1, dense: bool = False) -> pa.Table:
    table, topic = encoded(200, seed, dense=dense)
    rows = np.r_[np.flatnonzero(topic == 1)[:n_per_class], np.flatnonzero(topic == 0)[:n_per_class]]
    labels = ["animals"] * n_per_class + ["other"] * n_per_class
    return table.take(pa.array(rows)).append_column("label", pa.array(labels))


def test_classify_reads_the_text_view_and_save_load_keeps_scores(tmp_path):
    corpus_table, topic = encoded(300, 2)
    model = SeedModel.fit(seed_table(), corpus_table, META)
    clf = model.classifier(model.seeds.labels)
    assert clf.uses_text and not clf.uses_dense and model.background["text"] == corpus_table["text"].to_pylist()
    res = seed_scores(clf, corpus_table)
    assert auroc(res.scores[:, res.classes.index("animals")], topic == 1) > 0.95
    # the same model without texts: the signature and hidden-mean probe cannot see the topic
    blind = SeedModel.fit(seed_table().drop_columns(["text"]), corpus_table, META)
    assert not blind.classifier(blind.seeds.labels).uses_text
    r2 = seed_scores(blind.classifier(blind.seeds.labels), corpus_table)
    assert auroc(r2.scores[:, r2.classes.index("animals")], topic == 1) < 0.7

    again = SeedModel.load(model.save(tmp_path / "m"))
    assert again.seeds.texts == model.seeds.texts and again.background["text"] == model.background["text"]
    np.testing.assert_allclose(seed_scores(again.classifier(again.seeds.labels), corpus_table).scores, res.scores)
    # the operator: texts are read from every batch; a batch without them is a clear error
    out = Classify(seed_model=again)(corpus_table)
    np.testing.assert_allclose(out["score_animals"].to_numpy(), res.scores[:, res.classes.index("animals")], rtol=1e-5)
    with pytest.raises(InputError, match="lack `text`"):
        Classify(seed_model=again)(corpus_table.drop_columns(["text"]))


def test_a_seed_model_saved_before_the_text_view_loads_and_scores_without_it(tmp_path):
    corpus_table, _ = encoded(120, 3, dense=True)
    model = SeedModel.fit(seed_table(dense=True), corpus_table, META_DENSE)
    assert model.classifier(model.seeds.labels).uses_text
    path = model.save(tmp_path / "m")
    for name in ("seeds.parquet", "background.parquet"):  # what a seed model saved before this change held
        pq.write_table(pq.read_table(path / name).drop_columns(["text"]), path / name)
    old = SeedModel.load(path)
    assert old.seeds.texts is None and "text" not in old.background
    clf = old.classifier(old.seeds.labels)
    assert not clf.uses_text and clf.uses_dense
    assert seed_scores(clf, corpus_table.drop_columns(["text"])).scores.shape == (120, 2)


def test_mining_with_texts_and_heldout_scores():
    """One class of seeds against a corpus where the topic is rare: scores and out-of-fold cut-off scores both
    read the text view."""
    corpus_table, topic = encoded(300, 4, topic_rate=0.1)
    seeds = seed_table().filter(pa.compute.equal(pa.compute.field("label"), "animals")).drop_columns(["label"])
    model = SeedModel.fit(seeds, corpus_table, META, label_column=None)
    clf = model.classifier()
    assert clf.uses_text and clf.classes == ["seed"]
    assert auroc(seed_scores(clf, corpus_table).scores[:, 0], topic == 1) > 0.95
    pos, bg = model.heldout_scores(folds=4)
    off = bg[topic == 0]
    assert auroc(np.r_[pos, off], np.r_[np.ones(len(pos)), np.zeros(len(off))]) > 0.9


def test_background_sample_with_texts_and_the_other_methods():
    corpus_table, _ = encoded(50, 5)
    sample = background_sample(corpus_table, 20, text=True)
    assert len(sample["text"]) == 20 and set(sample["text"]) <= set(corpus_table["text"].to_pylist())
    with pytest.raises(InputError, match="no complete `text` column"):
        background_sample(corpus_table.drop_columns(["text"]), 20, text=True)
    seeds = SeedSignatures.from_table(seed_table(), META)
    assert seeds.texts is not None
    for method in ("knn", "centroid"):  # only the probe reads the extra views
        out = Classify(seeds, background=sample, method=method)(corpus_table.drop_columns(["text"]))
        assert out.num_rows == 50


def test_expand_filter_scores_read_the_text_and_not_the_steered_features():
    """expand's seed_score (filter.min_seed_score) reads the text view like mining does, and a feature the row was
    steered with does not move it; without the view (mining.read_text: false) the same rows are noise to it."""
    from pipelines.expand import seed_scores as filter_scores

    corpus_table, _ = encoded(300, 4, topic_rate=0.1)
    seeds = seed_table().filter(pa.compute.equal(pa.compute.field("label"), "animals")).drop_columns(["label"])
    generated, topic = encoded(80, 9)
    model = SeedModel.fit(seeds, corpus_table, META, label_column=None)
    scores = np.asarray(filter_scores(model, generated))
    assert auroc(scores, topic == 1) > 0.95
    blind = SeedModel.fit(seeds.drop_columns(["text"]), corpus_table.drop_columns(["text"]), META, label_column=None)
    assert auroc(np.asarray(filter_scores(blind, generated.drop_columns(["text"]))), topic == 1) < 0.8

    # steer every row with its own strongest feature (tripled): with target_features listing it, the score stays
    ids, vals = generated["feature_ids"].to_pylist(), generated["feature_values"].to_pylist()
    top = [int(f[int(np.argmax(v))]) for f, v in zip(ids, vals)]
    boosted = generated.set_column(
        generated.schema.get_field_index("feature_values"),
        "feature_values",
        pa.array(
            [[x * (3.0 if f == t else 1.0) for f, x in zip(fs, vs)] for fs, vs, t in zip(ids, vals, top)],
            pa.list_(pa.float32()),
        ),
    )
    steered = boosted.append_column("target_features", pa.array([[t] for t in top], pa.list_(pa.int32())))
    unsteered = generated.append_column("target_features", pa.array([[t] for t in top], pa.list_(pa.int32())))
    assert np.allclose(filter_scores(model, steered), filter_scores(model, unsteered), atol=1e-6)
    assert filter_scores(model, steered) != filter_scores(model, boosted)
    with pytest.raises(InputError, match="lack `text`"):
        filter_scores(model, generated.drop_columns(["text"]))

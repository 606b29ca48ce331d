"""Operators without Ray: each is a plain callable on a pyarrow table / numpy dict."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from qscope.errors import InputError
from qscope.index import SignatureIndex
from qscope.operators import (
    BuildSignatureIndex,
    Classify,
    Dedup,
    EncodeSignatures,
    FilterByScore,
    MineBySignature,
    Resources,
    ScoreTargetFeatures,
    SteeredGenerate,
    WriteParquetShards,
)
from qscope.operators.filter import distinct_word_ratio
from qscope.operators.writer import SUCCESS, finalize_shards, is_complete
from qscope.provenance import Provenance
from qscope.seed_model import SeedSignatures, background_sample

HAM = [
    "Amateur radio logging program for contests and QSO records.",
    "APRS digipeater and packet radio tools for ham radio operators.",
    "Morse code (CW) trainer for amateur radio licence exams.",
]
OTHER = [
    "A fast C++ library for parsing JSON documents.",
    "Fonts with wide Unicode coverage for desktop use.",
    "Perl module to read and write spreadsheets.",
]


@pytest.fixture(scope="module")
def encoder(spec):
    return EncodeSignatures(model_spec=spec, pooling="max", top_n=32)


@pytest.fixture(scope="module")
def encoded(encoder):
    ids = [f"h{i}" for i in range(3)] + [f"o{i}" for i in range(3)]
    return encoder({"id": np.array(ids), "text": np.array(HAM + OTHER, dtype=object)})


def test_encode_schema_and_matches_feature_extractor(encoder, encoded):
    assert encoded.schema.field("feature_ids").type == pa.list_(pa.int32())
    assert encoded.schema.field("feature_values").type == pa.list_(pa.float32())
    assert encoded.num_rows == 6 and all(0 < n <= 32 for n in encoded["n_tokens"].to_pylist())
    doc = encoder.encode_texts([HAM[0]])[0]
    ids, vals = doc.signature("max", 32)
    assert encoded["feature_ids"][0].as_py() == ids.tolist()
    np.testing.assert_allclose(encoded["feature_values"][0].as_py(), vals, rtol=1e-5)
    vals0 = encoded["feature_values"][0].as_py()
    assert vals0 == sorted(vals0, reverse=True)


def test_encode_counts_truncation_and_rejects_missing_column(encoder):
    out = encoder(pa.table({"text": ["word " * 200]}))
    assert out["truncated"].to_pylist() == [True] and out["n_tokens"][0].as_py() <= 32
    with pytest.raises(InputError, match="lacks column"):
        encoder(pa.table({"body": ["x"]}))


def test_encode_hidden_mean_column(spec, encoded):
    """hidden_mean=True adds the mean residual per row (a float32 list; null where a corpus row was rejected) and
    leaves the signature columns as they were."""
    op = EncodeSignatures(model_spec=spec, pooling="max", top_n=32, hidden_mean=True)
    batch = pa.table(
        {
            "id": ["h0", "bad", "o0"],
            "text": [HAM[0], "", OTHER[0]],
            "reject_reason": [None, "empty text", None],
        }
    )
    out = op(batch)
    assert out.schema.field("hidden_mean").type == pa.list_(pa.float32())
    means = out["hidden_mean"].to_pylist()
    assert means[1] is None and out["reject_reason"].to_pylist()[1] == "empty text"
    assert len(means[0]) == len(means[2]) == op.lm.d_model and means[0] != means[2]
    assert out["feature_ids"][0].as_py() == encoded["feature_ids"][0].as_py()
    assert "hidden_mean" not in encoded.column_names  # off by default


def test_map_batches_kwargs_are_fractional_and_complete():
    kw = EncodeSignatures.map_batches_kwargs({"pooling": "sum"}, Resources(num_cpus=0.5, concurrency=1), 8)
    assert kw["fn"] is EncodeSignatures and kw["num_cpus"] == 0.5 and kw["batch_size"] == 8
    assert kw["batch_format"] == "pyarrow" and kw["fn_constructor_kwargs"]["pooling"] == "sum"
    assert "num_gpus" not in kw
    kw = SteeredGenerate.map_batches_kwargs({"engine": "vllm"}, {"num_cpus": 1, "num_gpus": 1, "concurrency": 2})
    assert kw["num_gpus"] == 1


def _seeds(encoder, encoded, labels=None):
    t = encoded.slice(0, 3)
    if labels:
        t = t.append_column("label", pa.array(labels))
    return SeedSignatures.from_table(t, encoder.signature_meta())


def test_mine_ranks_seed_copies_first(encoder, encoded):
    seeds = _seeds(encoder, encoded)
    op = MineBySignature(
        seeds.to_dict(), targets=[int(encoded["feature_ids"][0][0].as_py())], target_reference=[1.0], k=1
    )
    out = op(encoded)
    sim = out["seed_similarity"].to_numpy()
    np.testing.assert_allclose(sim[:3], 1.0, atol=1e-4)  # a seed is its own nearest seed
    assert out["nearest_seed"].to_pylist()[:3] == ["h0", "h1", "h2"]
    assert (sim[3:] < 0.9999).all()
    assert {"target_score", "target_coverage", "mine_score"} <= set(out.column_names)
    dropped = MineBySignature(seeds, k=1, min_score=0.999, drop_below=True)(encoded)
    assert dropped["id"].to_pylist() == ["h0", "h1", "h2"]
    probe = MineBySignature(seeds, background=background_sample(encoded.slice(3)), method="probe")(encoded)
    ms = probe["mine_score"].to_numpy()
    assert ((ms >= 0) & (ms <= 1)).all() and ms[:3].min() > ms[3:].max()


def test_mine_rejects_signatures_from_another_sae(encoder, encoded):
    seeds = _seeds(encoder, encoded)
    other = SeedSignatures(**{**seeds.to_dict(), "meta": {**seeds.meta, "sae": "another/sae"}})
    md = encoder.signature_meta().to_metadata()
    with pytest.raises(InputError, match="sae="):
        MineBySignature(other)(encoded.replace_schema_metadata(md))


def test_classify_one_and_several_classes(encoder, encoded):
    with pytest.raises(InputError, match="background"):
        Classify(_seeds(encoder, encoded))
    single = Classify(_seeds(encoder, encoded), background=background_sample(encoded.slice(3)))(encoded)
    sc = single["score"].to_numpy()
    assert sc[:3].min() > sc[3:].max()
    both = encoded.slice(0, 6).append_column("label", pa.array(["ham"] * 3 + ["other"] * 3))
    seeds = SeedSignatures.from_table(both, encoder.signature_meta())
    for method in ("probe", "knn", "centroid"):
        out = Classify(seeds, method=method, k=1)(encoded)
        assert {"score_ham", "score_other"} <= set(out.column_names)
        assert out["predicted_label"].to_pylist() == ["ham"] * 3 + ["other"] * 3, method


def test_index_roundtrip_and_other_sae_is_a_clear_error(encoder, encoded, tmp_path):
    b = BuildSignatureIndex(encoder.signature_meta())
    b.add_all([encoded.slice(0, 3), encoded.slice(3)])
    assert len(b.index) == 6
    path = b.save(tmp_path / "idx")
    idx = SignatureIndex.load(path, expect=encoder.signature_meta())
    res = idx.search(encoded["feature_ids"], encoded["feature_values"], k=1)
    assert list(res.ids[:, 0]) == encoded["id"].to_pylist()
    from dataclasses import replace

    with pytest.raises(InputError, match="sae="):
        SignatureIndex.load(path, expect=replace(encoder.signature_meta(), sae="qscope/another-sae"))
    with pytest.raises(InputError, match="does not exist"):
        SignatureIndex.load(tmp_path / "missing")


def test_filter_by_score():
    t = pa.table(
        {
            "text": ["long enough text", "tiny", "also long enough", None],
            "target_score": [0.9, 0.9, 0.1, 0.9],
            "seed_similarity": [0.5, 0.5, 0.5, float("nan")],
        }
    )
    out = FilterByScore({"target_score": 0.5, "seed_similarity": [0.0, 1.0]}, min_chars=5)(t)
    assert out["text"].to_pylist() == ["long enough text"]
    with pytest.raises(InputError, match="min"):
        FilterByScore({"target_score": [0.9, 0.1]})
    glued = "radio-telefoonet-t-am-j-h-m-j-n-j-ham-radio-radio-ham-ham-ham-ham-ham-radio-ham-ham-ham-ham"
    rep = pa.table({"text": ["radio radio radio radio radio", glued, "文" * 30, "a normal varied sentence here"]})
    assert FilterByScore({}, min_distinct_word_ratio=0.4)(rep)["text"].to_pylist() == ["a normal varied sentence here"]
    assert distinct_word_ratio("你好，我是一个由阿里云开发的AI助手。") > 0.9  # no spaces: one word per ideograph


def test_dedup_near_duplicates_and_seed_copies():
    t = pa.table(
        {
            "id": ["a", "b", "c", "d", "e"],
            "text": [
                "the quick brown fox jumps over the lazy dog today",
                "The quick brown fox jumps over the lazy dog today!",
                "an entirely different sentence about radio receivers",
                "copy of the seed text about morse code keyers",
                "",
            ],
        }
    )
    out = Dedup(threshold=0.7, reference=["copy of the seed text about morse code keyers"])(t)
    assert out["id"].to_pylist() == ["a", "c"]
    review = Dedup(
        threshold=0.7,
        reference=["copy of the seed text about morse code keyers"],
        reference_ids=["seed1"],
        keep_duplicates=True,
    )(t)
    assert review["duplicate_of"].to_pylist() == [None, "a", None, "seed1", "(empty)"]


def test_writer_shards_are_atomic_idempotent_and_marked(tmp_path):
    prov = Provenance("smollm2-135m", "tiny", 15, "hf", "run1")
    w = WriteParquetShards(str(tmp_path), prov.to_dict())
    batch = pa.table({"id": ["x", "y"], "text": ["a", "b"], "strength": [0.0, 2.0]})
    r1 = w(batch)
    w(batch)  # a retried batch rewrites the same shard: no duplicate rows
    w(pa.table({"id": ["z"], "text": ["c"]}))
    assert r1["rows"].to_pylist() == [2]
    assert not is_complete(tmp_path)
    final = finalize_shards(tmp_path, "samples.parquet", metadata={"run_id": "run1"}, sort_by="id")
    t = pq.read_table(final)
    assert t["id"].to_pylist() == ["x", "y", "z"]
    assert t["model"].to_pylist() == ["smollm2-135m"] * 3 and t["layer"].to_pylist() == [15] * 3
    assert t.schema.field("seed_ids").type == pa.list_(pa.string()) and t["strength"].to_pylist()[2] is None
    assert t["qscope_version"][0].as_py()
    assert t.schema.metadata[b"qscope.run_id"] == b"run1"
    assert is_complete(tmp_path) and json.loads((tmp_path / SUCCESS).read_text())["rows"] == 3
    assert not [p for p in tmp_path.rglob("*") if ".tmp-" in p.name]


def test_steered_generate_groups_by_intervention_and_score(spec, encoded):
    from qscope.steering import Intervention

    f = int(encoded["feature_ids"][0][0].as_py())
    iv = Intervention().activate(f, 4.0, layer=15, scale=1.0).to_json()  # explicit scale: no calibration pass
    gen = SteeredGenerate(model_spec=spec, max_new_tokens=6, temperature=0.0, chat=False)
    prompts = ["Package description: a tool for", "Package description: a library for"]
    table = pa.table(
        {
            "id": ["p0", "p1", "p2", "p3"],
            "prompt": prompts * 2,
            "intervention": ["", iv, "", Intervention().activate(f, 0.0, layer=15, scale=1.0).to_json()],
        }
    )
    out = gen(table)
    assert out["engine"].to_pylist() == ["hf"] * 4 and all(n <= 6 for n in out["n_new_tokens"].to_pylist())
    texts = out["text"].to_pylist()
    assert texts[2] == gen({"prompt": [prompts[0]]})["text"][0].as_py()  # grouping does not change results
    assert texts[3] == gen({"prompt": [prompts[1]]})["text"][0].as_py()  # strength 0 == unsteered
    scorer = ScoreTargetFeatures(
        targets=[f],
        target_reference=[1.0],
        model_spec=spec,
        seeds=SeedSignatures.from_table(
            encoded.slice(0, 3), EncodeSignatures(model_spec=spec, top_n=32).signature_meta()
        ),
    )
    scored = scorer(pa.table({"text": [HAM[0], "", texts[1]]}))
    ts = scored["target_score"].to_numpy()
    assert ((0 <= ts) & (ts <= 1)).all() and ts[1] == 0
    assert len(scored["tokens"][0].as_py()) == len(scored["token_target_act"][0].as_py()) > 0
    assert scored["seed_similarity"][0].as_py() > 0.5


def test_dedup_overlap_catches_a_seed_copied_with_an_added_sentence():
    seed = "GUI based tool to compare two RTTY streams. It computes the character error rate and the bit error rate."
    copy = seed + " It also prints a summary table of every error it found in both streams for the operator."
    t = pa.table({"id": ["g1", "g2"], "text": [copy, "A logging program for VHF and UHF contests with many bands."]})
    # Jaccard is diluted by the appended sentence (the copy has ~2x the shingles): it keeps the copy
    assert Dedup(threshold=0.7, reference=[seed])(t)["id"].to_pylist() == ["g1", "g2"]
    out = Dedup(threshold=0.7, reference=[seed], reference_ids=["comptty"], measure="overlap", keep_duplicates=True)(t)
    assert out["duplicate_of"].to_pylist() == ["comptty", None]
    with pytest.raises(InputError, match="measure"):
        Dedup(measure="cosine")
    with pytest.raises(InputError, match="threshold"):
        Dedup(threshold=1.5)


def test_ensure_setup_runs_setup_once_and_first_batch_uses_it():
    from qscope.operators import Operator

    class Counting(Operator):
        setups = 0

        def setup(self):
            type(self).setups += 1

        def process(self, table):
            return table

    op = Counting()
    op.ensure_setup()
    op.ensure_setup()
    op({"x": [1]})
    assert Counting.setups == 1

"""The review report and the documented output schema."""

from pathlib import Path

import pyarrow as pa

from qscope.report import highlight, schema_markdown, write_report
from qscope.report.schema import OUTPUT_COLUMNS, order_columns


def _samples():
    return pa.table({
        "id": ["gen-00000", "pkg-a"], "text": ["CW <keyer> for hams", "APRS tracker"],
        "source": ["synthesized", "mined"], "target_score": pa.array([0.8, 0.4], pa.float32()),
        "target_coverage": pa.array([0.5, 0.25], pa.float32()),
        "seed_similarity": pa.array([0.3, 0.6], pa.float32()),
        "seed_ids": [["s1", "s2"], ["s1"]], "target_features": pa.array([[7, 9], []], pa.list_(pa.int32())),
        "strength": pa.array([2.0, None], pa.float32()),
        "feature_ids": pa.array([[7, 3], [9]], pa.list_(pa.int32())),
        "tokens": [["CW", " <keyer>", " for", " hams"], None],
        "token_target_act": pa.array([[0.0, 1.3, 0.0, 0.2], None], pa.list_(pa.float32())),
    })


def test_report_is_self_contained_html(tmp_path):
    seeds = pa.table({"id": ["s1"], "text": ["seed text"], "target_score": pa.array([1.0], pa.float32()),
                      "target_coverage": pa.array([1.0], pa.float32()),
                      "seed_similarity": pa.array([1.0], pa.float32()),
                      "feature_ids": pa.array([[7, 9]], pa.list_(pa.int32())), "tokens": [["seed", " text"]],
                      "token_target_act": pa.array([[0.5, 0.0]], pa.list_(pa.float32()))})
    targets = [{"feature": 7, "score": 2.1, "frac_seeds": 1.0, "frac_background": 0.1, "reference": 1.5},
               {"feature": 9, "score": 1.2, "frac_seeds": 0.5, "frac_background": 0.0, "reference": 2.0}]
    path = write_report(tmp_path / "r.html", _samples(), seeds, targets,
                        {"run_id": "r1", "model": "m", "sae": "s", "layer": 15, "counts": {"final": 2},
                         "timings": {"encode": 1.0}})
    html = path.read_text()
    assert html.count("data:image/png;base64,") == 2  # score histograms + target coverage
    assert "&lt;keyer&gt;" in html and "<keyer>" not in html  # text is escaped
    assert 'title="1.30"' in html  # the token that fires a target is highlighted with its value
    for section in ("Target features", "Score distributions", "Samples (2 of 2)", "Seeds vs outputs", "Output schema"):
        assert section in html
    assert "src=\"http" not in html and "<script" not in html


def test_report_without_outputs(tmp_path):
    empty = _samples().slice(0, 0)
    html = write_report(tmp_path / "r.html", empty, None, [], {}).read_text()
    assert "Samples (0 of 0)" in html


def test_highlight_escapes_and_shades():
    h = str(highlight(["a", "<b>"], [0.0, 2.0], "a<b>"))
    assert h.startswith("a<span") and "&lt;b&gt;" in h and "rgba(230,85,13,0.85)" in h


def test_docs_output_schema_is_current():
    assert Path("docs/output_schema.md").read_text() == schema_markdown()
    assert len({c for c, _, _ in OUTPUT_COLUMNS}) == len(OUTPUT_COLUMNS)
    t = order_columns(pa.table({"zzz": [1], "text": ["x"], "id": ["a"]}))
    assert t.column_names == ["id", "text", "zzz"]

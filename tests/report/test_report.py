"""The review report and the documented output schema."""

from pathlib import Path

import pyarrow as pa

from qscope.report import highlight, schema_markdown, write_report
from qscope.report.schema import OUTPUT_COLUMNS, order_columns


def _samples():
    return pa.table(
        {
            "id": ["gen-00000", "pkg-a"],
            "text": ["CW <keyer> for hams", "APRS tracker"],
            "source": ["synthesized", "mined"],
            "target_score": pa.array([0.8, 0.4], pa.float32()),
            "target_coverage": pa.array([0.5, 0.25], pa.float32()),
            "seed_similarity": pa.array([0.3, 0.6], pa.float32()),
            "seed_ids": [["s1", "s2"], ["s1"]],
            "target_features": pa.array([[7, 9], []], pa.list_(pa.int32())),
            "strength": pa.array([2.0, None], pa.float32()),
            "feature_ids": pa.array([[7, 3], [9]], pa.list_(pa.int32())),
            "tokens": [["CW", " <keyer>", " for", " hams"], None],
            "token_target_act": pa.array([[0.0, 1.3, 0.0, 0.2], None], pa.list_(pa.float32())),
        }
    )


def test_report_is_self_contained_html(tmp_path):
    seeds = pa.table(
        {
            "id": ["s1"],
            "text": ["seed text"],
            "target_score": pa.array([1.0], pa.float32()),
            "target_coverage": pa.array([1.0], pa.float32()),
            "seed_similarity": pa.array([1.0], pa.float32()),
            "feature_ids": pa.array([[7, 9]], pa.list_(pa.int32())),
            "tokens": [["seed", " text"]],
            "token_target_act": pa.array([[0.5, 0.0]], pa.list_(pa.float32())),
        }
    )
    targets = [
        {"feature": 7, "score": 2.1, "frac_seeds": 1.0, "frac_background": 0.1, "reference": 1.5},
        {"feature": 9, "score": 1.2, "frac_seeds": 0.5, "frac_background": 0.0, "reference": 2.0},
    ]
    path = write_report(
        tmp_path / "r.html",
        _samples(),
        seeds,
        targets,
        {"run_id": "r1", "model": "m", "sae": "s", "layer": 15, "counts": {"final": 2}, "timings": {"encode": 1.0}},
    )
    html = path.read_text()
    assert html.count("data:image/png;base64,") == 2  # score histograms + target coverage
    assert "&lt;keyer&gt;" in html and "<keyer>" not in html  # text is escaped
    assert 'title="1.30"' in html  # the token that fires a target is highlighted with its value
    for section in ("Target features", "Score distributions", "Samples (2 of 2)", "Seeds vs outputs", "Output schema"):
        assert section in html
    assert 'src="http' not in html and "<script" not in html


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


# --- the report names features (issue 15) -----------------------------------------------------------------
TARGETS = [
    {"feature": 7, "score": 2.1, "frac_seeds": 1.0, "frac_background": 0.1, "reference": 1.5},
    {"feature": 9, "score": 1.2, "frac_seeds": 0.5, "frac_background": 0.0, "reference": 2.0},
]


def _rows(html: str, header: str) -> list[str]:
    """The <tr> rows of the table that follows `header`."""
    table = html.split(header, 1)[1].split("</table>", 1)[0]
    return table.split("<tr>")[2:]


def test_report_names_target_and_steered_features_and_links_dashboards(tmp_path):
    from qscope.report import FeatureNote

    notes = {
        7: FeatureNote(7, "CW, keyer → Morse", 0.83, "dashboards/feature-7.html"),
        9: {"label": "APRS, tracker", "quality": 0.61},
    }  # plain dicts work too (e.g. from JSON)
    html = write_report(tmp_path / "r.html", _samples(), None, TARGETS, {}, features=notes).read_text()
    first, second = _rows(html, "<h2>Target features</h2>")
    assert '<a href="dashboards/feature-7.html">7</a>' in first and "CW, keyer → Morse" in first and "0.83" in first
    assert "APRS, tracker" in second and "0.61" in second and "href" not in second  # no dashboard written for 9
    steered = _rows(html, "<h2>Samples")[0]  # the synthesized row, steered towards 7 and 9
    assert '<a href="dashboards/feature-7.html">7</a> <span class="lab">CW, keyer → Morse</span>' in steered
    assert '9 <span class="lab">APRS, tracker</span>' in steered
    assert "label quality" in html and "0.5 = chance" in html


def test_dashboards_next_to_the_report_are_linked(tmp_path):
    (tmp_path / "dashboards").mkdir()
    (tmp_path / "dashboards" / "feature-9.html").write_text("<html></html>")
    html = write_report(tmp_path / "r.html", _samples(), None, TARGETS, {}).read_text()
    first, second = _rows(html, "<h2>Target features</h2>")
    assert '<a href="dashboards/feature-9.html">9</a>' in second and "href" not in first


def test_notes_round_trip(tmp_path):
    from qscope.report import FeatureNote, load_notes, save_notes

    notes = {3: FeatureNote(3, "a → b", 0.7, None), 5: FeatureNote(5, "c", None, "dashboards/feature-5.html")}
    assert load_notes(save_notes(notes, tmp_path / "feature_labels.json")) == notes


def test_describe_features_labels_and_writes_dashboards(lm, tmp_path, monkeypatch):
    """Real labels of the shipped SAE on demo texts, with scores, dashboards linked from the report."""
    import json

    from markupsafe import escape

    from qscope.features import FeatureExtractor
    from qscope.report import describe_features
    from qscope.sae import load_sae

    monkeypatch.setenv("QSCOPE_HOME", str(tmp_path / "home"))  # the activation cache goes there
    rows = [json.loads(x) for x in Path("data/demo/corpus.jsonl").read_text().splitlines()[:24]]
    sae = load_sae()
    doc = FeatureExtractor.single(lm, sae).extract([rows[0]["text"]])[sae.cfg.hook_layer][0]
    feats = [int(f) for f in doc.signature("max", 2)[0]]  # two features that fire on the first text
    notes = describe_features(lm, sae, feats, [r["text"] for r in rows], report_dir=tmp_path, max_length=48)
    assert sorted(notes) == sorted(feats)
    for n in notes.values():
        assert n.label and not n.label.startswith("(silent"), n  # they fire on the first text, so they have tokens
        assert 0.0 <= n.quality <= 1.0 and (tmp_path / n.dashboard).exists()
    html = write_report(
        tmp_path / "r.html", _samples(), None, [{**TARGETS[0], "feature": feats[0]}], {}, features=notes
    ).read_text()
    assert f'<a href="dashboards/feature-{feats[0]}.html">{feats[0]}</a>' in html
    assert str(escape(notes[feats[0]].label)) in html  # escaped as jinja escapes it

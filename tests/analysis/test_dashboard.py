"""Dashboards render in a real headless browser (Debian chromium) with the expected elements; the JSON export
uses Neuronpedia's field names."""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from html.parser import HTMLParser

import pytest

# Neuronpedia's feature record (`Neuron`) and `Activation` fields as its API (/api/feature/...) returns them and as
# SAEDashboard's Neuronpedia runner writes them; written out here, independently of qscope.analysis.neuronpedia.
NEURONPEDIA_FEATURE_KEYS = set(
    "modelId layer index maxActApprox frac_nonzero pos_str pos_values neg_str neg_values"
    " freq_hist_data_bar_heights freq_hist_data_bar_values logits_hist_data_bar_heights logits_hist_data_bar_values"
    " activations explanations".split()
)
NEURONPEDIA_ACTIVATION_KEYS = {"tokens", "values", "maxValue", "maxValueTokenIndex", "minValue"}
NEURONPEDIA_EXPLANATION_KEYS = {"description", "explanationModelName", "typeName"}


def dump_dom(chromium: str, path) -> str:
    """The DOM after the page's scripts ran, as chromium serializes it."""
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                f"--user-data-dir={profile}",
                "--dump-dom",
                f"file://{path}",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


class Elements(HTMLParser):
    """Collects (tag, attrs) of every element, to count them by class / attribute."""

    def __init__(self, html: str):
        super().__init__()
        self.items: list[tuple[str, dict]] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.items.append((tag, dict(attrs)))

    def count(self, tag=None, cls=None, **attrs) -> int:
        return sum(
            1
            for t, a in self.items
            if (tag is None or t == tag)
            and (cls is None or cls in (a.get("class") or "").split())
            and all(a.get(k.replace("_", "-")) == v for k, v in attrs.items())
        )

    def body(self) -> dict:
        return next(a for t, a in self.items if t == "body")


@pytest.fixture(scope="module")
def dashboards(data, lm, planted_sae, planted_acts, tmp_path_factory):
    from qscope.analysis import FeatureLabeler
    from qscope.analysis.dashboard import write_dashboards

    out = tmp_path_factory.mktemp("dash")
    labeler = FeatureLabeler(lm, planted_sae, planted_acts)
    return write_dashboards([data.PLANTED, 3], planted_acts, labeler, out, model=lm.name), out


def test_feature_page_renders_in_chromium(data, dashboards, chromium):
    result, out = dashboards
    d = result["features"][0]
    # the planted latent fires on all 10 code snippets and none of the prose: one top example per code text
    assert len(d["top"]) == len(data.CODE)
    dom = Elements(dump_dom(chromium, out / f"feature-{data.PLANTED}.html"))
    body = dom.body()
    assert body["data-rendered"] == "1"  # the page's script ran in the browser
    assert body["data-examples"] == str(len(data.CODE))
    assert dom.count("div", "example", data_kind="top") == len(data.CODE)
    assert dom.count("div", "quantile") == 4
    assert dom.count("div", "example", data_kind="quantile") == sum(len(q["examples"]) for q in d["quantiles"]) > 0
    assert dom.count("rect", "bar") == len(d["histogram"]["heights"]) == 30
    assert dom.count("tr", None) >= 20  # promoted + suppressed rows
    assert dom.count("span", "max") == len(data.CODE) + sum(len(q["examples"]) for q in d["quantiles"])
    assert any(a.get("id") == "density" for _, a in dom.items)


def test_index_links_every_feature(data, dashboards, chromium):
    _, out = dashboards
    dom = Elements(dump_dom(chromium, out / "index.html"))
    assert dom.body()["data-rendered"] == "1"
    assert dom.count("tr", "feature-row") == 2
    hrefs = {a.get("href") for t, a in dom.items if t == "a"}
    assert {f"feature-{data.PLANTED}.html", "feature-3.html"} <= hrefs


def test_neuronpedia_json_field_names(data, dashboards):
    _, out = dashboards
    np_json = json.loads((out / "neuronpedia" / f"{data.PLANTED}.json").read_text())
    assert NEURONPEDIA_FEATURE_KEYS <= set(np_json)
    assert np_json["index"] == str(data.PLANTED) and re.fullmatch(r"15-[a-z0-9-]+", np_json["layer"])
    assert len(np_json["freq_hist_data_bar_heights"]) == len(np_json["freq_hist_data_bar_values"])  # parallel
    assert len(np_json["logits_hist_data_bar_heights"]) == len(np_json["logits_hist_data_bar_values"])
    assert len(np_json["pos_str"]) == len(np_json["pos_values"]) == 10
    assert 0 < np_json["frac_nonzero"] < 1 and np_json["maxActApprox"] > 0
    for act in np_json["activations"]:
        assert NEURONPEDIA_ACTIVATION_KEYS <= set(act)
        assert len(act["tokens"]) == len(act["values"])
        assert act["values"][act["maxValueTokenIndex"]] == pytest.approx(act["maxValue"], rel=1e-3)
    assert NEURONPEDIA_EXPLANATION_KEYS <= set(np_json["explanations"][0])


def test_prompt_page_renders_in_chromium(data, lm, planted_sae, tmp_path, chromium):
    from qscope.analysis.dashboard import prompt_data, write_prompt_page
    from qscope.features import FeatureExtractor

    text = data.PROSE[0] + "\n" + data.CODE[0]
    doc = FeatureExtractor.single(lm, planted_sae, 15).extract([text])[15][0]
    d = prompt_data(doc, {data.PLANTED: "code"}, top=10, model=lm.name, sae=planted_sae.sae_id)
    page = write_prompt_page(d, tmp_path / "inspect.html")
    dom = Elements(dump_dom(chromium, page))
    assert dom.body()["data-rendered"] == "1"
    assert dom.body()["data-shown"] == str(d["features"][0]["id"])  # the script highlighted the top feature
    assert dom.count("span", "tok") == doc.n_tokens
    assert dom.count("tr", "token-row") == doc.n_tokens
    assert dom.count("tr", "doc-feature") == len(d["features"]) == 10
    assert data.PLANTED in [f["id"] for f in d["features"]]


def test_sweep_view_renders_in_chromium(tmp_path, chromium):
    from qscope.analysis.sweep_view import sweep_text, write_sweep

    table = [
        {"strength": s, "on_target_rate": r, "perplexity": p, "samples": [f"output at {s}"]}
        for s, r, p in [(0.0, 0.1, 12.0), (0.5, 0.4, 13.5), (1.0, 0.8, 19.0), (2.0, 0.95, 60.0)]
    ]
    page = write_sweep(table, tmp_path / "sweep.html", title="feature 37")
    dom = Elements(dump_dom(chromium, page))
    assert dom.body()["data-rendered"] == "1"
    assert dom.count("tr", "sweep-row") == 4
    assert dom.count("polyline") == 2 and dom.count("circle") == 8
    assert "output at 2.0" in sweep_text(table)


def test_dashboard_and_inspect_commands(data, lm, planted_sae, tmp_path, monkeypatch, capsys, chromium):
    from qscope.cli import main
    from qscope.models import LanguageModel

    monkeypatch.setattr(LanguageModel, "load", classmethod(lambda cls, *a, **k: lm))  # reuse the session model
    monkeypatch.setenv("QSCOPE_HOME", str(tmp_path / "home"))
    sae_dir = planted_sae.save(tmp_path / "sae")
    texts = tmp_path / "texts.jsonl"
    texts.write_text("\n".join(json.dumps({"text": t}) for t in data.CODE[:3] + data.PROSE[:3]))
    out = tmp_path / "dash"
    assert (
        main(
            [
                "dashboard",
                "--features",
                f"{data.PLANTED},5",
                "--out",
                str(out),
                "--texts",
                str(texts),
                "--sae",
                str(sae_dir),
                "--max-length",
                "48",
                "--json",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert [f["feature"] for f in summary["features"]] == [data.PLANTED, 5]
    assert summary["features"][0]["n_top"] == 3  # fires on the 3 code texts only
    assert (out / "index.html").exists() and (out / "neuronpedia" / f"{data.PLANTED}.json").exists()

    page = tmp_path / "inspect.html"
    assert (
        main(
            [
                "inspect",
                data.CODE[1],
                "--out",
                str(page),
                "--sae",
                str(sae_dir),
                "--background",
                str(texts),
                "--n-background",
                "6",
                "--top",
                "5",
                "--json",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["n_tokens"] > 0 and len(result["features"]) == 5
    dom = Elements(dump_dom(chromium, page))
    assert dom.count("span", "tok") == result["n_tokens"] and dom.body()["data-rendered"] == "1"

    assert main(["dashboard", "--features", "999999", "--out", str(out), "--sae", str(sae_dir), "--json"]) == 2
    assert json.loads(capsys.readouterr().out)["error"] == "InputError"


def test_sweep_view_reads_a_steering_sweep_result():
    from qscope.analysis.sweep_view import render_sweep, sweep_view_data
    from qscope.steering.sweep import SweepResult

    rows = [
        {
            "strength": s,
            "on_target_rate": r,
            "mean_max_activation": a,
            "perplexity": p,
            "mean_new_tokens": 8.0,
            "n_prompts": 2,
            "within_bound": p < 20,
        }
        for s, r, a, p in [(0.0, 0.0, 0.0, 9.0), (4.0, 1.0, 7.5, 14.0)]
    ]
    result = SweepResult(
        rows,
        4.0,
        18.0,
        feature=37,
        layer=15,
        op="activate",
        samples={0.0: ["plain text", "x"], 4.0: ["def steered():", "y"]},
    )
    d = sweep_view_data(result)
    assert [r["sample"] for r in d["rows"]] == ["plain text", "def steered():"]
    assert [s["name"] for s in d["chart"]["series"]] == ["on_target_rate", "mean_max_activation", "perplexity"]
    assert "within_bound" in d["columns"]
    html = render_sweep(result)
    assert "best strength 4" in html and html.count('class="sweep-row"') == 2
    assert sweep_view_data(result.to_dict())["rows"][1]["sample"] == "def steered():"

"""Names for the features a review report shows: analysis labels with their quality score, and dashboard links.

A feature id alone tells a reviewer nothing. `describe_features` labels the report's features with
`qscope.analysis.labels` (built from the tokens a feature fires on in a text sample and the tokens it promotes,
scored on held-out tokens of the same sample), optionally writes their dashboards next to the report, and returns
one `FeatureNote` per feature for `write_report`. Notes are plain data, saved as JSON beside the outputs so a
report can be re-rendered without the model.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from qscope.paths import atomic_path

DASHBOARDS_DIR = "dashboards"
"""Sub-directory of the report's directory that holds the features' dashboards (`feature-<id>.html`)."""
NOTES_FILE = "feature_labels.json"


@dataclass
class FeatureNote:
    """What a report says about one feature."""

    feature: int
    label: str
    """Automatic label: tokens it fires on → tokens it promotes (`qscope.analysis.labels`)."""
    quality: float | None = None
    """Balanced accuracy of "fires where a label word appears" on held-out tokens: 0.5 = chance, 1 = perfect.
    Context features (firing on every token of, say, code) score low even with an apt label."""
    dashboard: str | None = None
    """Link to the feature's dashboard, relative to the report's directory (None when none was written)."""

    @classmethod
    def from_dict(cls, d: Mapping) -> FeatureNote:
        return cls(int(d["feature"]), str(d.get("label") or ""), d.get("quality"), d.get("dashboard"))


def describe_features(
    lm,
    sae,
    features: Sequence[int],
    texts: Sequence[str],
    layer: int | None = None,
    report_dir: str | Path | None = None,
    dashboards: bool = True,
    max_length: int = 128,
    feature_stats=None,
) -> dict[int, FeatureNote]:
    """Label `features` from `texts` (e.g. the seeds plus a corpus sample); with `report_dir` and `dashboards`, also
    write `report_dir/dashboards/feature-<id>.html` and link them.

    The labeller builds labels from half of the texts and scores them on the other half, so give it at least a
    few dozen texts for meaningful scores. Activations are cached like the analysis background sample.
    """
    from qscope.analysis.background import background_activations
    from qscope.analysis.labels import FeatureLabeler

    features = list(dict.fromkeys(int(f) for f in features))
    if not features:
        return {}
    acts = background_activations(lm, sae, layer, list(texts), max_length=max_length)
    labeler = FeatureLabeler(lm, sae, acts)
    links: dict[int, str] = {}
    if report_dir is not None and dashboards:
        from qscope.analysis.dashboard import write_dashboards

        write_dashboards(
            features, acts, labeler, Path(report_dir) / DASHBOARDS_DIR, model=lm.name, feature_stats=feature_stats
        )
        links = {f: f"{DASHBOARDS_DIR}/feature-{f}.html" for f in features}
    notes = {}
    for f in features:
        lab = labeler.label(f)
        quality = (lab.score or {}).get("balanced_accuracy")
        notes[f] = FeatureNote(f, lab.text, None if quality is None else float(quality), links.get(f))
    return notes


def save_notes(notes: Mapping[int, FeatureNote], path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps([asdict(n) for n in notes.values()], ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def load_notes(path: str | Path) -> dict[int, FeatureNote]:
    notes = [FeatureNote.from_dict(d) for d in json.loads(Path(path).read_text(encoding="utf-8"))]
    return {n.feature: n for n in notes}


def resolve_notes(features: Sequence[int], notes: Mapping | None, report_dir: Path) -> dict[int, FeatureNote]:
    """One note per feature for the report: given ones (dicts or FeatureNotes), else a bare id; a dashboard that
    exists in `report_dir/dashboards/` is linked even when the note does not name it."""
    given = {
        int(k): (v if isinstance(v, FeatureNote) else FeatureNote.from_dict({"feature": k, **dict(v)}))
        for k, v in (notes or {}).items()
    }
    out = {}
    for f in dict.fromkeys(int(x) for x in features):
        note = given.get(f) or FeatureNote(f, "")
        if note.dashboard is None and (report_dir / DASHBOARDS_DIR / f"feature-{f}.html").exists():
            note = FeatureNote(note.feature, note.label, note.quality, f"{DASHBOARDS_DIR}/feature-{f}.html")
        out[f] = note
    return out

"""Pipeline configs: YAML ↔ dataclasses, 1:1 (every YAML key is a dataclass field; unknown keys are errors).

    cfg = ExpandConfig.from_yaml("configs/demo.yaml", overrides=["synthesis.n_samples=8"])
    kind, cfg = load_config("configs/mine.yaml")      # the YAML's `pipeline:` key picks the class
    print(cfg.to_yaml())

Loading, `Literal` checks and `--set` overrides are `qscope.config`'s (the SAE training config uses the same);
the sections (model, signatures, targets, mining, ...) are in `qscope.pipelines.config_sections`.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

from qscope.config import ConfigBase, Override, read_yaml
from qscope.deprecation import moved_names
from qscope.errors import InputError
from qscope.operators.base import ModelSpec
from qscope.pipelines.config_sections import (  # noqa: F401 - re-exported: the sections' historical import path
    DedupConfig,
    FilterConfig,
    MiningConfig,
    ResourceConfig,
    ResourcesConfig,
    SeedClassifierConfig,
    SignatureConfig,
    SynthesisConfig,
    TargetConfig,
    check_fraction,
    check_positive,
)


@dataclass
class PipelineConfig(ConfigBase):
    """What every corpus pipeline (expand, classify, mine) shares: inputs, outputs, the encoder, resources."""

    ignored_keys: ClassVar[tuple[str, ...]] = ("pipeline",)  # the selector `load_config` reads

    seeds: str = ""
    """Seed file (JSONL / JSON / CSV / Parquet with a text column). Read strictly: any bad row is an error."""
    corpus: str | None = None
    """Corpus: a file, a directory, a glob, a URI pyarrow reads (file://, s3://, ...), a `datasets.save_to_disk`
    directory, or hf:NAME[:CONFIG][@SPLIT]. Streamed by Ray Data; bad rows are set aside (max_bad_fraction)."""
    out: str = ""
    text_column: str = "text"
    id_column: str = "id"
    max_chars: int = 20000
    """Longer documents are cut (the LM reads at most model.max_length tokens anyway)."""
    corpus_signatures: str | None = None
    """Signature store to read and update (default: inside `out`). A corpus is encoded once: later runs, with new
    seeds or settings that do not change signatures, encode only new or changed corpus files."""
    reencode: bool = False
    """Rebuild a signature store made with other encoder settings instead of refusing it."""
    hash_files: bool = True
    """A corpus file whose mtime moved but whose size did not is compared by sha256 before it is re-encoded."""
    max_bad_fraction: float = 0.01
    """Bad corpus rows (not JSON, not text, unreadable files...) are set aside in `_rejected/`; past this fraction
    of the corpus the run fails (no _SUCCESS). Empty texts are skipped and do not count."""
    executor: Literal["ray", "local"] = "ray"
    """ray (local embedded Ray, a running cluster, or RAY_ADDRESS) or local (same process, no Ray)."""
    model: ModelSpec = field(default_factory=ModelSpec)
    """The LM, SAE and layer features are read with (defaults: the SAE's own model and layer)."""
    signatures: SignatureConfig = field(default_factory=SignatureConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)

    def check(self) -> None:
        check_fraction(self, "max_bad_fraction", low_open=False)
        check_positive(self, "max_chars")


@dataclass
class ExpandConfig(PipelineConfig):
    """`expand`: seeds → targets → mine + synthesize → score → filter → dedup → Parquet + report."""

    out: str = "out/expand"
    """Output directory (samples.parquet, report.html, targets.json, corpus_signatures.parquet/, _SUCCESS)."""
    max_corpus_rows: int | None = None
    """Read at most this many corpus rows (None = all); a partly read corpus is re-encoded on the next run."""
    save_corpus: bool = True
    """Also build the corpus `SignatureIndex` `<out>/corpus.index` (kNN search without the model)."""
    targets: TargetConfig = field(default_factory=TargetConfig)
    mining: MiningConfig = field(default_factory=MiningConfig)
    synthesis: SynthesisConfig = field(default_factory=SynthesisConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    report: bool = True
    """Write report.html next to the Parquet."""


@dataclass
class ClassifyConfig(SeedClassifierConfig, PipelineConfig):
    """`classify`: label a corpus from labelled seeds (one score per row, or one per class)."""

    corpus: str = ""
    out: str = "out/classify.parquet"
    """Result: a Parquet dataset directory (parts + `_SUCCESS`, `_rejected/`, `_seed_model/`, `_signatures/`)."""
    k: int = 5
    """Neighbours for knn."""
    label_column: str = "label"
    signatures: SignatureConfig = field(
        default_factory=lambda: SignatureConfig(pooling="sum", top_n=256, hidden_mean=True)
    )
    """Sum-pooled top-256 signatures (with the classifier's log1p weights) and the mean hidden state: the probe
    over both views is the best classifier in bench/efficacy.py."""

    def check(self) -> None:
        PipelineConfig.check(self)
        SeedClassifierConfig.check(self)


@dataclass
class MineConfig(SeedClassifierConfig, PipelineConfig):
    """`mine`: scheduled incremental mining of a growing corpus directory."""

    renamed_keys: ClassVar[dict[str, str]] = {"n_targets": "targets.n_features"}

    corpus: str = ""
    """Directory (or glob) of corpus files; each run processes only new or changed files."""
    out: str = "out/mine"
    """Output directory: mined/ (one partition per corpus file), state.json, _SUCCESS."""
    min_score: float = 0.5
    """Rows with mine_score >= this are kept (probe: a probability)."""
    targets: TargetConfig = field(default_factory=TargetConfig)
    """Target features of the seed model (reported with the mined rows; `n_features` as in expand)."""

    def check(self) -> None:
        PipelineConfig.check(self)
        SeedClassifierConfig.check(self)

    @property
    def n_targets(self) -> int:
        """Deprecated spelling of `targets.n_features`."""
        warnings.warn("MineConfig.n_targets is deprecated: use targets.n_features", DeprecationWarning, stacklevel=2)
        return self.targets.n_features

    @n_targets.setter
    def n_targets(self, value: int) -> None:
        warnings.warn("MineConfig.n_targets is deprecated: use targets.n_features", DeprecationWarning, stacklevel=2)
        self.targets.n_features = value


CONFIGS = {"expand": ExpandConfig, "classify": ClassifyConfig, "mine": MineConfig}


def load_config(path: str | Path, overrides: Iterable[Override] = ()) -> tuple[str, PipelineConfig]:
    """Read a YAML whose top-level `pipeline:` key names the pipeline (default expand), then apply `overrides`."""
    data = read_yaml(path)
    kind = data.pop("pipeline", "expand")
    if kind not in CONFIGS:
        raise InputError(f"{path}: unknown pipeline {kind!r}; choose one of {sorted(CONFIGS)}")
    return kind, CONFIGS[kind].from_dict(data, Path(path).name, overrides)


# The model section was a copy of ModelSpec, field for field: the old name warns and keeps working.
__getattr__ = moved_names(__name__, {"ModelConfig": "qscope.operators:ModelSpec"})

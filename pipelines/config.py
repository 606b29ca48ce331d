"""Pipeline configs: YAML ↔ dataclasses, 1:1 (every YAML key is a dataclass field; unknown keys are errors).

    cfg = ExpandConfig.from_yaml("configs/demo.yaml")
    cfg.synthesis.n_samples = 8
    print(cfg.to_yaml())
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from qscope.errors import InputError


class ConfigBase:
    """from_dict / to_dict / from_yaml / to_yaml for nested dataclasses, strict about unknown keys."""

    @classmethod
    def from_dict(cls, data: dict | None, where: str = ""):
        data = dict(data or {})
        if not isinstance(data, dict):
            raise InputError(f"{where or cls.__name__}: expected a mapping, got {type(data).__name__}")
        hints = typing.get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InputError(
                f"{where or cls.__name__}: unknown key(s) {unknown}; valid keys: {sorted(names)}"
            )
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.name not in data:
                continue
            value, hint = data[f.name], hints[f.name]
            sub = _config_class(hint)
            path = f"{where}.{f.name}" if where else f.name
            if sub is not None and value is not None:
                value = sub.from_dict(value, path)
            kwargs[f.name] = value
        try:
            obj = cls(**kwargs)
        except (TypeError, ValueError) as exc:
            raise InputError(f"{where or cls.__name__}: {exc}") from None
        check = getattr(obj, "validate", None)
        if check:
            check()
        return obj

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)  # type: ignore[arg-type]

    @classmethod
    def from_yaml(cls, path: str | Path):
        path = Path(path)
        if not path.exists():
            raise InputError(f"config file {path} does not exist")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise InputError(f"{path}: not valid YAML ({exc})") from None
        except UnicodeDecodeError:
            raise InputError(f"{path}: not valid UTF-8") from None
        if data is None:
            raise InputError(f"{path}: config is empty")
        if isinstance(data, dict):
            data.pop("pipeline", None)  # the selector load_config reads
        return cls.from_dict(data, path.name)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _config_class(hint) -> type | None:
    if isinstance(hint, type) and issubclass(hint, ConfigBase):
        return hint
    for arg in typing.get_args(hint):  # Optional[Sub]
        if isinstance(arg, type) and issubclass(arg, ConfigBase):
            return arg
    return None


def _positive(name: str, value: Any, allow_zero: bool = False) -> None:
    if not isinstance(value, (int, float)) or value < 0 or (value == 0 and not allow_zero):
        raise InputError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")


_CLASSIFY_METHODS = ("probe", "centroid", "knn")


def _score_or_auto(name: str, value: Any, allow_none: bool = False) -> None:
    if value == "auto" or (allow_none and value is None):
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{name} must be a number or 'auto'{' or null' if allow_none else ''}, got {value!r}")


def _choice(name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise InputError(f"{name} must be one of {list(allowed)}, got {value!r}")


@dataclass
class ModelConfig(ConfigBase):
    model: str | None = None
    """LM: embedded name, HF dir, .gguf or hub id (default: the SAE's own model, else smollm2-135m)."""
    sae: str | None = None
    """SAE: shipped id (default smollm2-135m-l15), SAELens / sparsify dir, Qwen-Scope file or hub id."""
    layer: int | None = None
    """Hook layer (default: the SAE's own)."""
    max_length: int = 256
    """Tokens read per text; longer texts are truncated (and counted in the `truncated` column)."""
    allow_model_mismatch: bool = False
    """Read the SAE on a model other than the one it records (a fine-tune, a renamed copy): off, that is an error."""
    device: str = "auto"
    """Model actors: auto = the GPU Ray gave the actor (resources num_gpus > 0), else the CPU."""
    dtype: str = "auto"
    """auto = bfloat16 on a GPU, float32 on the CPU; or bfloat16 / float16 / float32."""

    def validate(self) -> None:
        _choice("model.dtype", self.dtype, ("auto", "bfloat16", "float16", "float32"))

    def spec(self) -> dict:
        return {"model": self.model, "sae": self.sae, "layer": self.layer, "max_length": self.max_length,
                "allow_model_mismatch": self.allow_model_mismatch, "device": self.device, "dtype": self.dtype}


@dataclass
class ResourceConfig(ConfigBase):
    num_cpus: float = 0.5
    """CPUs per actor. Keep it fractional on small machines: whole-CPU actors deadlock Ray Data on 2 cores."""
    num_gpus: float = 0.0
    """GPUs per actor (vLLM / HF on GPU)."""
    concurrency: int = 1
    """Actors in the pool."""
    batch_size: int = 16
    """Rows per map_batches call."""
    threads: int = 0
    """torch threads per model actor (0 = the node's cores / concurrency; Ray alone would give a fractional actor
    one thread). Model stages run one after another, so a single model actor may use every core."""
    local_below: int = 0
    """Run the step in the driver process when its input has fewer rows (skips actor start-up; model-free steps)."""
    retries: int = 3
    """Restarts of a dead actor (lost node, OOM kill) before the run fails; errors in operator code fail at once."""

    def validate(self) -> None:
        _positive("num_cpus", self.num_cpus)
        _positive("num_gpus", self.num_gpus, allow_zero=True)
        _positive("concurrency", self.concurrency)
        _positive("batch_size", self.batch_size)

    def resources(self) -> dict:
        return {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus, "concurrency": self.concurrency,
                "threads": self.threads, "retries": self.retries}


@dataclass
class ResourcesConfig(ConfigBase):
    encode: ResourceConfig = field(default_factory=ResourceConfig)
    """LM + SAE encoders (seeds, corpus)."""
    generate: ResourceConfig = field(default_factory=ResourceConfig)
    """Generation actors (HF on CPU; vLLM wants num_gpus: 1)."""
    score: ResourceConfig = field(default_factory=ResourceConfig)
    """Re-encoding of generated texts."""
    light: ResourceConfig = field(default_factory=lambda: ResourceConfig(num_cpus=0.25, batch_size=256,
                                                                          local_below=20000))
    """Model-free steps: mining / classify scoring, filtering, writing."""


@dataclass
class SignatureConfig(ConfigBase):
    pooling: str = "max"
    """How token activations pool into a document signature: max, sum or binary."""
    top_n: int = 64
    """Latents kept per document signature."""

    def validate(self) -> None:
        from qscope.features import POOLINGS

        if self.pooling not in POOLINGS:
            raise InputError(f"signatures.pooling must be one of {POOLINGS}, got {self.pooling!r}")
        _positive("signatures.top_n", self.top_n)


@dataclass
class TargetConfig(ConfigBase):
    n_features: int = 8
    """How many target features to steer towards and score with."""
    method: str = "logodds"
    """Contrastive ranking of seeds vs the corpus background (`qscope.targets`): logodds or meandiff."""
    min_seed_fraction: float = 0.25
    """A target must fire on at least this fraction of the seeds."""
    features: list[int] | None = None
    """Use these features instead of selecting them."""

    def validate(self) -> None:
        if self.method not in ("logodds", "meandiff"):
            raise InputError(f"targets.method must be logodds or meandiff, got {self.method!r}")
        _positive("targets.n_features", self.n_features)


@dataclass
class MiningConfig(ConfigBase):
    enabled: bool = True
    """Mine the corpus for rows that look like the seeds."""
    method: str = "probe"
    """Seed classifier (`qscope.classify`): probe (logistic regression, corpus sample as negatives), centroid, knn."""
    k: int = 3
    """Seed similarity = mean cosine to the k nearest seeds (also the knn method's k)."""
    max_results: int = 50
    """Keep at most this many mined rows (best first)."""
    min_score: float | str = "auto"
    """Mined rows need mine_score >= this (probe: a probability). "auto": the cut-off whose estimated precision is
    `target_precision`, set from the seeds' own held-out scores against the background sample (cross-validation;
    `qscope.classify.precision_cutoff`); the estimate (precision, recall, expected rows) is in the summary."""
    target_precision: float = 0.8
    """Precision the "auto" cut-off aims for (also the synthesis filter's `min_seed_score: auto`)."""
    background_size: int = 2000
    """Corpus rows sampled as the classifier's background."""

    def validate(self) -> None:
        _choice("mining.method", self.method, _CLASSIFY_METHODS)
        _positive("mining.background_size", self.background_size)
        _score_or_auto("mining.min_score", self.min_score)
        if not 0.0 < float(self.target_precision) <= 1.0:
            raise InputError(f"mining.target_precision must be in (0, 1], got {self.target_precision!r}")


@dataclass
class SynthesisConfig(ConfigBase):
    n_samples: int = 16
    """How many new samples to generate (before filtering)."""
    engine: str = "hf"
    """Generation engine: hf (CPU default) or vllm."""
    strengths: list[float] | str = field(default_factory=lambda: [0.0, 2.0])
    """Steering strengths; samples cycle through them. 1.0 = the feature's typical activation on the seeds
    (its mean pooled max activation over the seeds it fires on), passed to the intervention as `scale`.
    "auto": a pilot sweep picks the strength (see `auto_strengths`)."""
    auto_strengths: list[float] = field(default_factory=lambda: [0.0, 0.5, 1.0, 2.0])
    """`strengths: auto`: the grid a pilot sweep tries (`pilot_samples` generations each, scored like the outputs:
    the seed classifier on the re-encoded text with the steered features removed, plus the text checks); the
    strength with the most samples passing the filter wins (ties: the smaller), and the run uses it alone."""
    pilot_samples: int = 8
    """Generations per strength in the `auto` pilot sweep."""
    features_per_sample: int = 2
    """How many target features each sample's intervention activates."""
    n_shots: int = 2
    """Seed examples shown in each few-shot prompt."""
    max_new_tokens: int = 64
    temperature: float = 0.7
    """0 = greedy; sampling is seeded by `seed`."""
    seed: int = 0
    chat: bool = False
    """Wrap the prompt in the model's chat template (instruction style) instead of plain few-shot completion."""
    prompt_template: str = "Here are some {what}.\n\n{examples}\n\n" + "Description:"
    """Few-shot prompt; {examples} = the shots joined by blank lines, {what} = `what`."""
    example_template: str = "Description: {text}"
    """How each shot is written ({text} = the seed text, shortened to `max_example_chars`)."""
    stop_strings: list[str] = field(default_factory=lambda: ["\n\n", "Description:"])
    """The generated text is cut at the first of these (completions run on into the next example)."""
    engine_kwargs: dict = field(default_factory=dict)
    """Engine settings (vllm: dtype, tensor_parallel_size, gpu_memory_utilization, max_model_len, anything
    `vllm.LLM` takes); defaults fit the device (bf16 on GPU, float32 on CPU). Checked before any model loads."""
    what: str = "short descriptions"
    """How the prompt names the kind of text."""
    max_example_chars: int = 300
    """Each shot is cut to this many characters."""

    def validate(self) -> None:
        from qscope.generation import ENGINES

        if self.engine not in ENGINES:
            raise InputError(f"synthesis.engine must be one of {ENGINES}, got {self.engine!r}")
        _positive("synthesis.n_samples", self.n_samples, allow_zero=True)
        if isinstance(self.strengths, str):
            if self.strengths != "auto":
                raise InputError(f"synthesis.strengths must be a list of numbers or 'auto', got {self.strengths!r}")
            if not self.auto_strengths:
                raise InputError("synthesis.auto_strengths must list at least one strength")
            _positive("synthesis.pilot_samples", self.pilot_samples)
        elif not self.strengths:
            raise InputError("synthesis.strengths must list at least one strength (0.0 = unsteered)")


@dataclass
class FilterConfig(ConfigBase):
    min_target_score: float = 0.2
    """Keep samples with target_score >= this. The target features' activation is what steering raises, so on
    steered text it is not proof of being on topic: bench/synthesis_results.md judges the kept rows independently."""
    min_seed_score: float | str | None = None
    """... and seed_score >= this: the seed classifier (the probe that mines) on the re-encoded text, with the
    features a sample was steered with removed from its signature. "auto": the mining cut-off for
    `mining.target_precision` (from the seeds' held-out scores); null: off. Off by default: measured on hamradio
    (bench/synthesis_results.md) it kept 3 rows at 0.67 on target where the target filter kept 7 at 0.71."""
    min_seed_similarity: float = 0.0
    """... and seed_similarity >= this."""
    min_chars: int = 20
    """... and at least this many characters."""
    min_distinct_word_ratio: float = 0.4
    """... and distinct words / words at least this (drops degenerate, repetitive generations)."""

    def validate(self) -> None:
        _score_or_auto("filter.min_seed_score", self.min_seed_score, allow_none=True)


@dataclass
class DedupConfig(ConfigBase):
    threshold: float = 0.7
    """Word-3-gram similarity at or above which two texts are duplicates (also against the seeds)."""
    measure: str = "jaccard"
    """jaccard (near-identical texts) or overlap (|a∩b| / min(|a|,|b|): also a text contained in another)."""

    def validate(self) -> None:
        from qscope.operators.dedup import check_dedup_args

        check_dedup_args(self.measure, self.threshold, prefix="dedup.")


@dataclass
class PipelineConfig(ConfigBase):
    """What every corpus pipeline (expand, classify, mine) shares: inputs, outputs, the encoder, resources."""

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
    executor: str = "ray"
    """ray (local embedded Ray, a running cluster, or RAY_ADDRESS) or local (same process, no Ray)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    signatures: SignatureConfig = field(default_factory=SignatureConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)

    def validate(self) -> None:
        if self.executor not in ("ray", "local"):
            raise InputError(f"executor must be 'ray' or 'local', got {self.executor!r}")
        if not 0.0 <= self.max_bad_fraction <= 1.0:
            raise InputError(f"max_bad_fraction must be in [0, 1], got {self.max_bad_fraction!r}")
        _positive("max_chars", self.max_chars)


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
class ClassifyConfig(PipelineConfig):
    """`classify`: label a corpus from labelled seeds (one score per row, or one per class)."""

    corpus: str = ""
    out: str = "out/classify.parquet"
    """Result: a Parquet dataset directory (parts + `_SUCCESS`, `_rejected/`, `_seed_model/`, `_signatures/`)."""
    method: str = "probe"
    """probe (logistic regression), centroid or knn (`qscope.classify`)."""
    k: int = 5
    """Neighbours for knn."""
    background_size: int = 2000
    """Corpus rows sampled as background (negatives for a single class)."""
    label_column: str = "label"

    def validate(self) -> None:
        super().validate()
        _choice("method", self.method, _CLASSIFY_METHODS)
        _positive("background_size", self.background_size)

    signatures: SignatureConfig = field(default_factory=lambda: SignatureConfig(pooling="sum", top_n=256))
    """Sum-pooled top-256 signatures (with the classifier's log1p weights): the best signature classifier in
    bench/efficacy.py."""


@dataclass
class MineConfig(PipelineConfig):
    """`mine`: scheduled incremental mining of a growing corpus directory."""

    corpus: str = ""
    """Directory (or glob) of corpus files; each run processes only new or changed files."""
    out: str = "out/mine"
    """Output directory: mined/ (one partition per corpus file), state.json, _SUCCESS."""
    min_score: float = 0.5
    """Rows with mine_score >= this are kept (probe: a probability)."""
    method: str = "probe"
    """Seed classifier: probe, centroid or knn."""
    background_size: int = 2000
    """Corpus rows kept as the classifier's background (sampled on the first run, kept while seeds are)."""
    k: int = 3
    n_targets: int = 8

    def validate(self) -> None:
        super().validate()
        _choice("method", self.method, _CLASSIFY_METHODS)
        _positive("background_size", self.background_size)


CONFIGS = {"expand": ExpandConfig, "classify": ClassifyConfig, "mine": MineConfig}


def load_config(path: str | Path) -> tuple[str, ConfigBase]:
    """Read a YAML whose top-level `pipeline:` key names the pipeline (default expand)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping at the top level")
    kind = data.pop("pipeline", "expand")
    if kind not in CONFIGS:
        raise InputError(f"{path}: unknown pipeline {kind!r}; choose one of {sorted(CONFIGS)}")
    return kind, CONFIGS[kind].from_dict(data, path.name)

"""The sections of the pipeline configs (`qscope.pipelines.config`): one dataclass per YAML mapping.

Choices are `Literal` types, checked when the YAML loads (`qscope.config`); `check()` holds the ranges.
The `model:` section is `qscope.operators.ModelSpec` itself and each `resources.<stage>` extends
`qscope.operators.Resources`: what the operators take is what the YAML says, declared once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from qscope.config import ConfigBase
from qscope.operators.base import Resources
from qscope.operators.filter import MIN_DISTINCT_WORD_RATIO

ClassifierMethod = Literal["probe", "centroid", "knn"]
"""The seed classifiers of `qscope.classify`."""


def check_positive(section: ConfigBase, key: str, allow_zero: bool = False) -> None:
    value = getattr(section, key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (value == 0 and not allow_zero):
        raise section.invalid(key, f"must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")


def check_fraction(section: ConfigBase, key: str, low_open: bool = True) -> None:
    value = getattr(section, key)
    ok = isinstance(value, (int, float)) and (0.0 < value if low_open else 0.0 <= value) and value <= 1.0
    if not ok:
        raise section.invalid(key, f"must be in {'(0' if low_open else '[0'}, 1], got {value!r}")


@dataclass
class ResourceConfig(Resources):
    """One stage's actors (`Resources`: num_cpus, num_gpus, concurrency, threads, retries) and its batches."""

    batch_size: int = 16
    """Rows per map_batches call."""
    local_below: int = 0
    """Run the step in the driver process when its input has fewer rows (skips actor start-up; model-free steps)."""

    def check(self) -> None:
        super().check()
        check_positive(self, "batch_size")

    def actor_resources(self) -> Resources:
        """What each actor asks Ray for (without the batch settings)."""
        return Resources(
            num_cpus=self.num_cpus,
            num_gpus=self.num_gpus,
            concurrency=self.concurrency,
            threads=self.threads,
            retries=self.retries,
        )


@dataclass
class ResourcesConfig(ConfigBase):
    encode: ResourceConfig = field(default_factory=ResourceConfig)
    """LM + SAE encoders (seeds, corpus)."""
    generate: ResourceConfig = field(default_factory=ResourceConfig)
    """Generation actors (HF on CPU; vLLM wants num_gpus: 1)."""
    score: ResourceConfig = field(default_factory=ResourceConfig)
    """Re-encoding of generated texts."""
    light: ResourceConfig = field(
        default_factory=lambda: ResourceConfig(num_cpus=0.25, batch_size=256, local_below=20000)
    )
    """Model-free steps: mining / classify scoring, filtering, writing."""


@dataclass
class SignatureConfig(ConfigBase):
    pooling: Literal["max", "sum", "binary"] = "max"
    """How token activations pool into a document signature (`qscope.features.POOLINGS`)."""
    top_n: int = 64
    """Latents kept per document signature."""
    hidden_mean: bool = False
    """Also keep each row's mean hidden state (4 bytes x the model width per row): the probe then reads it next to
    the signature (`qscope.classify`; on by default for classify, bench/README.md "Issue 14, item 5")."""

    def check(self) -> None:
        check_positive(self, "top_n")


@dataclass
class TargetConfig(ConfigBase):
    n_features: int = 8
    """How many target features to steer towards and score with."""
    method: Literal["logodds", "meandiff"] = "logodds"
    """Contrastive ranking of seeds vs the corpus background (`qscope.targets`)."""
    min_seed_fraction: float = 0.25
    """A target must fire on at least this fraction of the seeds."""
    features: list[int] | None = None
    """Use these features instead of selecting them."""

    def check(self) -> None:
        check_positive(self, "n_features")

    def seed_model_kwargs(self) -> dict:
        """These settings as `SeedModel.fit`'s keyword arguments."""
        return {
            "n_targets": self.n_features,
            "target_method": self.method,
            "min_seed_fraction": self.min_seed_fraction,
            "fixed_targets": self.features,
        }


@dataclass
class SeedClassifierConfig(ConfigBase):
    """The seed classifier (`qscope.classify`) that mine, classify and expand's `mining:` fit on the seeds."""

    method: ClassifierMethod = "probe"
    """probe (logistic regression, a corpus sample as negatives), centroid or knn."""
    k: int = 3
    """Seed similarity = mean cosine to the k nearest seeds (also the knn method's k)."""
    background_size: int = 2000
    """Corpus rows sampled as the classifier's background (negatives for a single class)."""
    read_text: bool = True
    """probe: also read each row's text: a TF-IDF probe of its own beside the signature probe, the two mixed by
    the seeds' cross-validated AUROC. Classify: 10/15 sae-probes tasks >= the best baseline (bench/README.md, item
    5); expand's filter: hamradio keeps 23 of 48 steered samples at 0.96 on target instead of 4 at 1.00
    (bench/synthesis_results.md). false: signatures (and hidden means) only."""

    def check(self) -> None:
        check_positive(self, "background_size")


@dataclass
class MiningConfig(SeedClassifierConfig):
    enabled: bool = True
    """Mine the corpus for rows that look like the seeds."""
    max_results: int = 50
    """Keep at most this many mined rows (best first)."""
    min_score: float | Literal["auto"] = "auto"
    """Mined rows need mine_score >= this (probe: a probability). "auto": the cut-off whose estimated precision is
    `target_precision`, set from the seeds' own held-out scores against the background sample (cross-validation;
    `qscope.classify.precision_cutoff`); the estimate (precision, recall, expected rows) is in the summary."""
    target_precision: float = 0.8
    """Precision the "auto" cut-off aims for (also the synthesis filter's `min_seed_score: auto`)."""

    def check(self) -> None:
        super().check()
        check_fraction(self, "target_precision")


@dataclass
class SynthesisConfig(ConfigBase):
    n_samples: int = 16
    """How many new samples to generate (before filtering)."""
    engine: Literal["hf", "vllm"] = "hf"
    """Generation engine (`qscope.generation.ENGINES`): hf (CPU default) or vllm."""
    strengths: list[float] | Literal["auto"] = field(default_factory=lambda: [0.0, 2.0])
    """Steering strengths; samples cycle through them. 1.0 = the feature's typical activation on the seeds
    (its mean pooled max activation over the seeds it fires on), passed to the intervention as `scale`.
    "auto": a pilot sweep picks the strength (see `auto_strengths`)."""
    auto_strengths: list[float] = field(default_factory=lambda: [0.0, 0.5, 1.0, 2.0])
    """`strengths: auto`: the grid a pilot sweep tries (`pilot_samples` generations each, scored like the outputs:
    the seed classifier on the re-encoded text with the steered features removed, plus the text checks); the
    strength with the most samples passing the filter wins (ties: the smaller), and the run uses it alone."""
    pilot_samples: int = 24
    """Generations per strength in the `auto` pilot sweep. 24: with 8 the pilot could not tell strengths whose
    yields differ by a few rows (electronics: picked 1.0, kept 0.67 on target by independent judges); with 24
    hamradio, biology and sports kept >= 0.83 on target on two replicates (bench/synthesis_results.md);
    electronics 1.00 on one and 0.69 on the other."""
    features_per_sample: int = 2
    """How many target features each sample's intervention activates."""
    n_shots: int = 8
    """Seed examples shown in each few-shot prompt (fewer when there are fewer seeds). 8 rather than 4
    (bench/synthesis_results.md, "Eight shots", `strengths: auto`, 48 generations, two replicates, independent
    judges): kept rows on target by both judges hamradio 0.84 / 0.95 -> 1.00 / 1.00, biology 0.89 / 0.83 -> 0.97 /
    0.90, electronics 1.00 (8 kept) / 0.69 (13) -> 0.82 (17) / 0.77 (22), sports 0.97-1.00 either way; 4 rather than 2
    lifted hamradio's steered generations 0.50 -> 0.77 before filtering. Prompts grow with it (~230 -> ~450 tokens
    with the demo's 240-character shots; HF generation on 2 CPU threads 1.34x the time per token)."""
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
    engine_kwargs: dict[str, Any] = field(default_factory=dict)
    """Engine settings (vllm: dtype, tensor_parallel_size, gpu_memory_utilization, max_model_len, anything
    `vllm.LLM` takes); defaults fit the device (bf16 on GPU, float32 on CPU). Checked before any model loads."""
    what: str = "short descriptions"
    """How the prompt names the kind of text."""
    max_example_chars: int = 300
    """Each shot is cut to this many characters."""

    def check(self) -> None:
        check_positive(self, "n_samples", allow_zero=True)
        if self.strengths == "auto":
            if not self.auto_strengths:
                raise self.invalid("auto_strengths", "must list at least one strength")
            check_positive(self, "pilot_samples")
        elif not self.strengths:
            raise self.invalid("strengths", "must list at least one strength (0.0 = unsteered)")


@dataclass
class FilterConfig(ConfigBase):
    min_target_score: float = 0.2
    """Keep samples with target_score >= this. The target features' activation is what steering raises, so on
    steered text it is not proof of being on topic: bench/synthesis_results.md judges the kept rows independently."""
    min_seed_score: float | Literal["auto"] | None = "auto"
    """... and seed_score >= this (synthesized rows): the seed classifier (the probe that mines) on the re-encoded
    text, with the features a sample was steered with removed from its signature. "auto": the mining cut-off for
    `mining.target_precision` (from the seeds' held-out scores); null: off. Measured with independent judges on
    three Debian niches x two arms (bench/synthesis_results.md, 4 shots): with the target filter it keeps rows at
    least as often on target as the target filter alone in all six (hamradio steered 1.00 vs 0.97, electronics
    0.69 vs 0.48, biology 0.97 vs 0.84), at a lower yield (hamradio steered: 4 of 48 kept instead of 36)."""
    min_seed_similarity: float = 0.0
    """... and seed_similarity >= this."""
    min_chars: int = 20
    """... and at least this many characters."""
    min_distinct_word_ratio: float = MIN_DISTINCT_WORD_RATIO
    """... and distinct words / words at least this (drops degenerate, repetitive generations)."""


@dataclass
class DedupConfig(ConfigBase):
    threshold: float = 0.7
    """Word-3-gram similarity at or above which two texts are duplicates (also against the seeds)."""
    measure: Literal["jaccard", "overlap"] = "jaccard"
    """jaccard (near-identical texts) or overlap (|a∩b| / min(|a|,|b|): also a text contained in another)."""

    def check(self) -> None:
        from qscope.operators.dedup import check_dedup_args  # the operator's own check: one rule

        check_dedup_args(self.measure, self.threshold, prefix=getattr(self, "_key_prefix", "dedup."))

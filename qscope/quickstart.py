"""The quick-start API: an LM with its SAE(s) in one object, and an explorer for finding and reading features.

    from qscope.quickstart import SAEModel, FeatureExplorer
    from qscope.steering import Intervention

    sae = SAEModel.from_pretrained()                 # embedded SmolLM2-135M + the shipped layer-15 SAE
    explorer = FeatureExplorer(sae, layer=15)
    features = explorer.discover_top_features("code generation")
    intervention = Intervention().activate(features[0], strength=0.8).suppress(features[1], strength=0.6)
    output = sae.generate("Explain quantum computing", intervention=intervention)

Discovered features are `Feature`s: plain ints (so they go straight into `Intervention`) that also carry their
label and separation scores.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from qscope.errors import InputError

log = logging.getLogger(__name__)


class Feature(int):
    """A feature id that remembers what discovery found about it."""

    def __new__(
        cls,
        index: int,
        *,
        layer: int | None = None,
        label: str | None = None,
        auroc: float | None = None,
        effect_size: float | None = None,
        sae_id: str | None = None,
    ):
        obj = super().__new__(cls, int(index))
        obj.layer, obj.label, obj.auroc, obj.effect_size, obj.sae_id = layer, label, auroc, effect_size, sae_id
        return obj

    def __repr__(self) -> str:
        extra = f", {self.label!r}" if self.label else ""
        extra += f", auroc={self.auroc:.3f}" if self.auroc is not None else ""
        return f"Feature({int(self)}{extra})"

    def __reduce__(self):
        return (int, (int(self),))


class SAEModel:
    """A `LanguageModel` plus SAEs by layer: read features, generate (steered or not)."""

    def __init__(self, lm, saes: dict, sae_specs: dict | None = None):
        if not saes:
            raise InputError("SAEModel needs at least one SAE")
        self.lm, self.saes = lm, dict(saes)
        self.sae_specs = dict(sae_specs or {})  # layer -> how the SAE was named (finds its feature statistics)
        self._engine = None

    @classmethod
    def from_pretrained(
        cls,
        sae: str | Path | None = None,
        model: str | None = None,
        layer: int | None = None,
        max_length: int = 512,
        allow_model_mismatch: bool = False,
    ) -> SAEModel:
        """Load an SAE (shipped id, directory, Qwen-Scope file or hub id[@revision]; default: the shipped SAE of
        `model`, or of the embedded default model) and its model (default: the model the SAE records;
        `qscope.models.model_for_sae`). A `model` other than the SAE's recorded one is refused unless
        `allow_model_mismatch=True`."""
        from qscope.models import LanguageModel, check_sae_fits, resolve_sae_and_model

        chosen = resolve_sae_and_model(sae, model, layer, allow_model_mismatch)
        lm = LanguageModel.load(chosen.model, max_length=max_length)
        check_sae_fits(lm, chosen.sae)
        return cls(lm, {chosen.layer: chosen.sae}, {chosen.layer: chosen.sae_spec})

    @property
    def layers(self) -> list[int]:
        return sorted(self.saes)

    def sae(self, layer: int | None = None):
        if layer is None:
            if len(self.saes) != 1:
                raise InputError(f"several SAEs loaded (layers {self.layers}); pass layer=")
            return next(iter(self.saes.values()))
        if layer not in self.saes:
            raise InputError(f"no SAE for layer {layer} (have {self.layers})")
        return self.saes[layer]

    def features(
        self, texts: Sequence[str] | str, layer: int | None = None, top: int = 10
    ) -> list[list[tuple[int, float]]]:
        """Top features (id, max activation) of each text."""
        from qscope.features import FeatureExtractor

        layer = layer if layer is not None else self.layers[0]
        docs = FeatureExtractor.single(self.lm, self.sae(layer), layer).extract(texts)[layer]
        return [[(int(i), round(float(v), 4)) for i, v in zip(*d.signature("max", top))] for d in docs]

    @property
    def engine(self):
        if self._engine is None:
            from qscope.generation import make_engine

            self._engine = make_engine("hf", lm=self.lm, saes=self.saes)
        return self._engine

    def generate(
        self,
        prompts: Sequence[str] | str,
        intervention=None,
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        seed: int = 0,
    ) -> str | list[str]:
        """Completions (chat template applied); a single prompt gives a single string."""
        single = isinstance(prompts, str)
        results = self.engine.generate(
            [prompts] if single else list(prompts),
            intervention=intervention,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            seed=seed,
        )
        texts = [r.text for r in results]
        return texts[0] if single else texts


class FeatureExplorer:
    """Find, label and show the features of one SAE layer.

    background: texts (or a file) standing for ordinary text; default a fixed sample of the demo corpus.
    Its activations are cached on disk, so the first explorer on a machine takes longest.
    """

    def __init__(
        self,
        model: SAEModel,
        layer: int | None = None,
        background: Sequence[str] | str | Path | None = None,
        n_background: int = 200,
        max_length: int = 128,
    ):
        self.model = model
        self.layer = layer if layer is not None else model.layers[0]
        self.sae = model.sae(self.layer)
        self.max_length = max_length
        self._background_spec, self.n_background = background, n_background
        self._background = None
        self._labeler = None
        self._stats = None
        self.last_discovery = None
        self.last_examples: tuple[list[str], list[str]] | None = None

    @property
    def lm(self):
        return self.model.lm

    def background_texts(self) -> list[str]:
        from qscope.analysis.background import background_texts

        spec = self._background_spec
        if spec is None:
            return background_texts(self.n_background)
        if isinstance(spec, (str, Path)):
            return background_texts(self.n_background, spec)
        return list(spec)

    @property
    def background(self):
        """`CorpusActivations` of the background sample (cached on disk)."""
        if self._background is None:
            from qscope.analysis.background import background_activations

            self._background = background_activations(
                self.lm, self.sae, self.layer, self.background_texts(), max_length=self.max_length
            )
        return self._background

    @property
    def labeler(self):
        if self._labeler is None:
            from qscope.analysis.labels import FeatureLabeler

            self._labeler = FeatureLabeler(self.lm, self.sae, self.background)
        return self._labeler

    def discover(
        self,
        positives: Sequence[str],
        negatives: Sequence[str] | None = None,
        top: int = 10,
        method: str = "auroc",
        label: bool = True,
    ):
        """`DiscoveryResult` for explicit positive (and optional negative) texts; background otherwise."""
        from qscope.analysis.activations import CorpusActivations
        from qscope.analysis.discovery import discover_features
        from qscope.analysis.labels import FeatureLabeler

        collect = lambda texts: CorpusActivations.collect(self.lm, self.sae, texts, self.layer, self.max_length)  # noqa: E731
        pos_acts = collect(positives)
        labeler = None
        if negatives is None:
            neg_acts = self.background
            labeler = self.labeler if label else None
        else:
            neg_acts = collect(negatives)
            if label:  # label from the texts at hand unless the background sample is already read
                labeler = (
                    self.labeler
                    if self._background is not None
                    else FeatureLabeler(self.lm, self.sae, CorpusActivations.concat([pos_acts, neg_acts]))
                )
        result = discover_features(
            self.lm,
            self.sae,
            positives,
            layer=self.layer,
            top=top,
            method=method,
            labeler=labeler,
            negatives_acts=neg_acts,
            positives_acts=pos_acts,
        )
        self.last_discovery = result
        return result

    def discover_top_features(
        self,
        concept: str | None = None,
        examples: Sequence[str] | None = None,
        negatives: Sequence[str] | None = None,
        top: int = 10,
        n_examples: int = 8,
        method: str = "auroc",
        max_new_tokens: int = 48,
    ) -> list[Feature]:
        """Features behind a concept, best first.

        With `examples`, those are the positives (negatives: given, else the background sample). With only a
        concept phrase, the model writes `n_examples` examples of it and as many of unrelated topics (same
        prompt templates) to contrast with; `last_examples` keeps them for inspection.
        """
        if examples is None:
            if not concept:
                raise InputError("give a concept phrase or examples")
            from qscope.analysis.concepts import concept_examples

            examples, written_neg = concept_examples(
                self.lm, concept, n_examples, max_new_tokens, engine=self.model.engine
            )
            negatives = negatives if negatives is not None else written_neg
        self.last_examples = (list(examples), list(negatives or []))
        result = self.discover(examples, negatives, top=top, method=method)
        return [
            Feature(
                s.feature,
                layer=self.layer,
                label=s.label,
                auroc=s.auroc,
                effect_size=s.effect_size,
                sae_id=self.sae.sae_id,
            )
            for s in result.features
        ]

    @property
    def feature_stats(self):
        """The SAE's `qscope.evaluation.FeatureStats` when they exist for it (None otherwise)."""
        if self._stats is None:
            self._stats = False
            spec = self.model.sae_specs.get(self.layer)
            if spec is not None:
                try:
                    from qscope.evaluation import load_feature_stats

                    stats = load_feature_stats(spec)
                    if stats.d_sae == self.sae.d_sae:
                        self._stats = stats
                except Exception as exc:  # statistics are optional: dashboards fall back to the sample
                    log.info("no feature statistics for %s: %s", spec, exc)
        return self._stats or None

    def label(self, feature: int, lm_label: bool = False):
        return self.labeler.lm_label(feature) if lm_label else self.labeler.label(feature)

    def dashboard(self, features: Sequence[int], out_dir: str | Path, texts: Sequence[str] | None = None, **kw) -> dict:
        """Write HTML dashboards (+ Neuronpedia JSON) for `features`, from the background or given texts."""
        from qscope.analysis.activations import CorpusActivations
        from qscope.analysis.dashboard import write_dashboards
        from qscope.analysis.labels import FeatureLabeler

        if texts is None:
            acts, labeler = self.background, self.labeler
        else:
            acts = CorpusActivations.collect(self.lm, self.sae, texts, self.layer, self.max_length)
            labeler = FeatureLabeler(self.lm, self.sae, acts)
        kw.setdefault("feature_stats", self.feature_stats)
        return write_dashboards([int(f) for f in features], acts, labeler, out_dir, model=self.lm.name, **kw)

    def inspect(self, text: str, out: str | Path | None = None, top: int = 20, label: bool = True) -> dict:
        """Features of one text, per token; written as an HTML page when `out` is given."""
        from qscope.analysis.dashboard import prompt_data, write_prompt_page
        from qscope.features import FeatureExtractor

        doc = FeatureExtractor.single(self.lm, self.sae, self.layer).extract([text])[self.layer][0]
        ids, _ = doc.signature("max", top)
        labels = {int(f): self.labeler.label(int(f), score=False).text for f in ids} if label else {}
        d = prompt_data(doc, labels, top, model=self.lm.name, sae=self.sae.sae_id)
        if out is not None:
            write_prompt_page(d, out)
        return d

    def sweep(
        self,
        feature: int,
        prompts: Sequence[str] | str,
        strengths: Sequence[float] | None = None,
        out: str | Path | None = None,
        **kw,
    ):
        """Steering strength sweep of one feature (`qscope.steering.sweep.strength_sweep`); HTML view at `out`."""
        from qscope.steering.sweep import DEFAULT_STRENGTHS, strength_sweep

        result = strength_sweep(
            self.model.engine, prompts, int(feature), strengths or DEFAULT_STRENGTHS, layer=self.layer, **kw
        )
        if out is not None:
            from qscope.analysis.sweep_view import write_sweep

            write_sweep(result, out)
        return result

    def localize(
        self,
        positives: Sequence[str],
        negatives: Sequence[str] | None = None,
        layers: Sequence[int] | None = None,
        **kw,
    ):
        """Which layer separates the concept best (probe at every layer, SAE features where loaded)."""
        from qscope.analysis.localization import localize_concept

        if negatives is None:  # as many background texts as positives (at least 8): a balanced probe
            negatives = self.background_texts()[: max(len(positives), 8)]
        return localize_concept(self.lm, positives, negatives, layers=layers, saes=self.model.saes, **kw)

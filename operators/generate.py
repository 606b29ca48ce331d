"""SteeredGenerate: prompts (+ an intervention per row) → completions, one engine call per batch."""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import pyarrow as pa

from qscope.errors import InputError
from qscope.operators.base import ModelSpec, Operator, Resources, load_model_and_sae, require_columns, set_column


class SteeredGenerate(Operator):
    """Generate a completion for each row's `prompt`, steered by the row's `intervention` (JSON, "" = none).

    One `engine.generate` call serves the whole batch with per-row interventions: the vLLM engine runs it as one
    continuous batch (each request carries its own steering), the HF engine batches rows of equal intervention
    together. Adds `text`, `finish_reason`, `n_new_tokens` and `engine`; `stop_strings` cut the text (few-shot
    completions run on into the next example).

    engine "hf" (default, CPU) or "vllm" (GPU actors). `engine_kwargs` are the engine's settings, checked here
    by `qscope.generation.resolve_engine_kwargs` (pass its result; `synthesis.engine_kwargs` in YAML). A vLLM actor
    loads the tokenizer and the SAE only (no HF copy of the model); its workers load the SAE from the same spec.

        from qscope.steering import Intervention
        from qscope.operators import SteeredGenerate
        iv = Intervention().activate(812, 4.0).to_json()
        op = SteeredGenerate(model_spec={"max_length": 256}, engine="hf", max_new_tokens=48)
        out = op({"prompt": ["Describe a Debian package."] * 2, "intervention": [iv, ""]})
        # Ray Data, one vLLM engine on two GPUs (tensor parallel):
        kw = SteeredGenerate.map_batches_kwargs(
            {"engine": "vllm", "engine_kwargs": {"tensor_parallel_size": 2}}, {"num_gpus": 2}, batch_size=64)
        ds = ds.map_batches(**kw)
    """

    name: ClassVar[str] = "steered_generate"
    uses_torch: ClassVar[bool] = True

    def __init__(
        self,
        model_spec: ModelSpec | dict | None = None,
        engine: str = "hf",
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        seed: int = 0,
        chat: bool = True,
        engine_kwargs: dict | None = None,
        stop_strings: list[str] | tuple[str, ...] = (),
        resources: Resources | dict | None = None,
    ):
        super().__init__(resources)
        from qscope.generation import ENGINES, resolve_engine_kwargs

        if engine not in ENGINES:
            raise InputError(f"unknown engine {engine!r}; choose one of {ENGINES}")
        self.model_spec = ModelSpec.coerce(model_spec)
        self.engine_kind, self.max_new_tokens, self.temperature = engine, int(max_new_tokens), float(temperature)
        self.seed, self.chat = int(seed), chat
        # Checked before anything loads; idempotent, so already-resolved settings pass through unchanged.
        self.engine_kwargs = resolve_engine_kwargs(engine, engine_kwargs, self.resources.num_gpus)
        self.stop_strings = [s for s in stop_strings if s]

    def setup(self) -> None:
        from qscope.generation import make_engine

        if self.engine_kind == "hf":
            lm, sae, layer = load_model_and_sae(self.model_spec)
            self.engine = make_engine("hf", lm=lm, saes={layer: sae}, **self.engine_kwargs)
            return
        model, sae_spec, sae, layer = _vllm_sources(self.model_spec)
        # (spec, sae): the engine validates with this copy and its workers load their own from the spec.
        self.engine = make_engine(
            "vllm", model=model, saes={layer: (sae_spec, sae)}, seed=self.seed, **self.engine_kwargs
        )

    def teardown(self) -> None:
        if getattr(self, "engine", None) is not None:
            self.engine.close()

    def _cut(self, text: str) -> str:
        """Completion-style few-shot prompts run on past the sample: cut at the first stop string."""
        text = text.strip()
        for s in self.stop_strings:
            j = text.find(s)
            if j >= 0:
                text = text[:j]
        return text.strip()

    def process(self, table: pa.Table) -> pa.Table:
        from qscope.steering import Intervention

        require_columns(table, "prompt", op=self.name)
        prompts = table.column("prompt").to_pylist()
        raw = table.column("intervention").to_pylist() if "intervention" in table.column_names else [""] * len(prompts)
        parsed: dict[str, Intervention | None] = {}
        ivs = []
        for iv in raw:
            iv = iv or ""
            if iv not in parsed:
                parsed[iv] = Intervention.from_json(iv) if iv else None
            ivs.append(parsed[iv])
        results = self.engine.generate(
            prompts,
            intervention=ivs,
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            seed=self.seed,
            chat=self.chat,
        )
        table = set_column(table, "text", pa.array([self._cut(r.text) for r in results], pa.string()))
        table = set_column(table, "finish_reason", pa.array([r.finish_reason for r in results], pa.string()))
        table = set_column(table, "n_new_tokens", pa.array([len(r.token_ids) for r in results], pa.int32()))
        return set_column(table, "engine", pa.array([self.engine_kind] * len(prompts), pa.string()))

    # --- Ray glue ---------------------------------------------------------------------------------------------
    @classmethod
    def map_batches_kwargs(
        cls, constructor_kwargs: dict | None = None, resources: Resources | dict | None = None, batch_size: int = 32
    ) -> dict:
        """As `Operator.map_batches_kwargs`, plus what a multi-GPU vLLM engine needs inside a Ray Data actor.

        tensor_parallel_size x pipeline_parallel_size = n > 1 (resources.num_gpus must be n):
        - executor "mp" (the default, as in ray.data.llm): the actor itself holds the n GPUs and vLLM starts its
          worker processes on them (one node).
        - executor "ray": the actor asks for no GPU; `ray_remote_args_fn` gives each actor its own placement
          group of n {"GPU": 1, "CPU": 1} bundles (PACK) with child capture, so vLLM's Ray workers land in it.
        """
        kw = super().map_batches_kwargs(constructor_kwargs, resources, batch_size)
        ctor = kw["fn_constructor_kwargs"]
        if ctor.get("engine", "hf") != "vllm":
            return kw
        from qscope.generation import resolve_engine_kwargs

        num_gpus = float(ctor["resources"]["num_gpus"])
        engine_kwargs = resolve_engine_kwargs("vllm", ctor.get("engine_kwargs"), num_gpus)
        n = int(engine_kwargs.get("tensor_parallel_size", 1)) * int(engine_kwargs.get("pipeline_parallel_size", 1))
        if n > 1:
            engine_kwargs.setdefault("distributed_executor_backend", "mp")
            if engine_kwargs["distributed_executor_backend"] == "ray":
                kw["num_gpus"] = 0
                kw["ray_remote_args_fn"] = functools.partial(placement_group_strategy, placement_bundles(n))
            else:
                kw["num_gpus"] = n
        ctor["engine_kwargs"] = engine_kwargs
        return kw


def placement_bundles(n_workers: int) -> list[dict[str, float]]:
    """One bundle per vLLM worker (tensor x pipeline parallel ranks)."""
    return [{"GPU": 1, "CPU": 1} for _ in range(n_workers)]


def placement_group_strategy(bundles: list[dict[str, float]], strategy: str = "PACK") -> dict[str, Any]:
    """Ray remote args placing an actor (and, via child capture, its vLLM workers) in a fresh placement group.

    Called by Ray Data once per actor it starts, so every engine replica gets its own group."""
    import ray
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    pg = ray.util.placement_group(bundles, strategy=strategy)
    return {"scheduling_strategy": PlacementGroupSchedulingStrategy(pg, placement_group_capture_child_tasks=True)}


def _vllm_sources(spec: ModelSpec) -> tuple[str, str, Any, int]:
    """(model spec, SAE spec, SAE, layer) without loading the LM: what a vLLM actor needs."""
    from qscope.models import resolve_sae_and_model

    chosen = resolve_sae_and_model(spec.sae, spec.model, spec.layer, spec.allow_model_mismatch)  # the HF engine's rule
    return chosen.model, chosen.sae_spec, chosen.sae, chosen.layer

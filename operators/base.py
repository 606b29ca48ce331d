"""The one base class every qscope operator derives from, and the batch plumbing they share.

An operator is a callable class (Ray Data's `map_batches` constructs it once per actor):

- `resources`: what one actor asks Ray for. CPUs are *fractional* by default (0.5): on a 2-core machine a Ray Data
  pipeline whose actors each ask for a whole CPU hangs forever, so defaults must be safe on small machines.
- `setup()`: load the model / index once per actor. `ensure_setup()` runs it once (the first `__call__` does,
  so operators also work without Ray: `op = EncodeSignatures(...); out = op(table)`).
- `process(table) -> table`: the one method a subclass implements, on a pyarrow Table.

`__call__` accepts whatever Ray hands over (pyarrow Table, dict of numpy arrays, pandas DataFrame, list of dicts)
and always returns a pyarrow Table with explicit types, so list columns keep their int32/float32 types.

    import ray
    from qscope.operators import EncodeSignatures
    ds = ray.data.from_items([{"id": "a", "text": "CW keyer for amateur radio"}])
    ds = ds.map_batches(**EncodeSignatures.map_batches_kwargs(
        {"model_spec": {"sae": "smollm2-135m-l15"}}, {"num_cpus": 0.5, "concurrency": 1}, batch_size=16))

`map_batches_kwargs(constructor_kwargs, resources, batch_size)` runs the operator in an `ActorPoolStrategy` pool of
`resources.concurrency` actors, each asking for `num_cpus` / `num_gpus`.
"""

from __future__ import annotations

import functools
import threading
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import pyarrow as pa

from qscope.config import ConfigBase
from qscope.errors import InputError


@dataclass(unsafe_hash=True)
class Resources(ConfigBase):
    """What one actor of an operator asks Ray for (also the fields of a pipeline config's `resources.<stage>`)."""

    num_cpus: float = 0.5
    """Fractional CPUs keep small machines from deadlocking (2 cores: 1.0 per actor hangs Ray Data)."""
    num_gpus: float = 0.0
    """GPUs per actor (fractional allowed, e.g. 0.5 to pack two vLLM actors on one GPU)."""
    concurrency: int = 1
    """Actors in the pool (ActorPoolStrategy size)."""
    threads: int = 0
    """torch threads per actor of a model operator; 0 = the machine's cores / the pool size (Ray alone would set
    OMP_NUM_THREADS = max(1, int(num_cpus)), i.e. 1 for a
    fractional actor). A lone model actor on a small machine may use every core: set it to the core count."""
    retries: int = 3
    """How often a dead actor is restarted and its batch retried (a lost node, an OOM kill) before the run fails:
    bounded, so an actor that dies on every attempt cannot keep a run going forever. Errors raised by operator
    code are not retried: they fail the run at once."""

    def check(self) -> None:
        for key, value, zero_ok in (
            ("num_cpus", self.num_cpus, False),
            ("num_gpus", self.num_gpus, True),
            ("concurrency", self.concurrency, False),
        ):
            if not isinstance(value, (int, float)) or value < 0 or (value == 0 and not zero_ok):
                raise self.invalid(key, f"must be {'>= 0' if zero_ok else '> 0'}, got {value!r}")


def as_table(batch: Any) -> pa.Table:
    """Normalize a Ray batch (pyarrow / numpy dict / pandas / list of dicts) to a pyarrow Table."""
    if isinstance(batch, pa.Table):
        return batch
    if isinstance(batch, pa.RecordBatch):
        return pa.Table.from_batches([batch])
    if isinstance(batch, dict):
        cols = {}
        for k, v in batch.items():
            if isinstance(v, (pa.Array, pa.ChunkedArray)):
                cols[k] = v
            elif isinstance(v, np.ndarray) and v.dtype != object:
                cols[k] = pa.array(v) if v.ndim == 1 else pa.array(list(v))
            else:
                cols[k] = pa.array([x.tolist() if isinstance(x, np.ndarray) else x for x in v])
        return pa.table(cols)
    if isinstance(batch, list):
        return pa.Table.from_pylist(batch)
    if hasattr(batch, "to_dict") and hasattr(batch, "columns"):  # pandas
        return pa.Table.from_pandas(batch, preserve_index=False)
    raise InputError(f"unsupported batch type {type(batch).__name__}")


def require_columns(table: pa.Table, *names: str, op: str = "") -> None:
    missing = [n for n in names if n not in table.column_names]
    if missing:
        raise InputError(f"{op}: batch lacks column(s) {missing} (has {table.column_names})")


def set_column(table: pa.Table, name: str, values) -> pa.Table:
    arr = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values)
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, arr)
    return table.append_column(name, arr)


class Operator:
    """Base class: `resources`, lazy `setup()` once per actor, `process(table) -> table`."""

    name: ClassVar[str] = "operator"
    uses_torch: ClassVar[bool] = False
    """A model operator: its torch thread count is set before `setup()` (see `Resources.threads`)."""
    default_resources: ClassVar[Resources] = Resources()

    def __init__(self, resources: Resources | dict | None = None):
        if isinstance(resources, dict):
            resources = Resources(**resources)
        self.resources = resources or self.default_resources
        self._ready = False
        self._lock = threading.RLock()  # re-entrant: the first batch sets torch threads, then calls ensure_setup()

    def auto_threads(self) -> int:
        # Ray gives a fractional-CPU actor OMP_NUM_THREADS=1: a lone model actor would use one core of many.
        import os

        return max(1, (os.cpu_count() or 1) // max(1, int(self.resources.concurrency)))

    def setup(self) -> None:
        """Load heavy state (model, SAE, index). Called once, before the first batch."""

    def teardown(self) -> None:
        """Release heavy state (optional)."""

    def process(self, table: pa.Table) -> pa.Table:  # pragma: no cover - abstract
        raise NotImplementedError

    def ensure_setup(self) -> None:
        """Run `setup()` once (thread-safe; later calls return at once). The first batch does this; call it to use
        an operator's own methods before any batch, or to set up an operator composed inside another one."""
        if not self._ready:
            with self._lock:
                if not self._ready:
                    self.setup()
                    self._ready = True

    def __call__(self, batch: Any) -> pa.Table:
        if not self._ready:
            with self._lock:
                if not self._ready:
                    # Only the actor's first batch sets torch threads: an operator set up inside another (or
                    # used directly on the driver) leaves the process's thread count alone.
                    threads = self.resources.threads or (self.auto_threads() if self.uses_torch else 0)
                    if threads:
                        import torch

                        torch.set_num_threads(int(threads))
                    self.ensure_setup()
        return self.process(as_table(batch))

    # --- Ray glue -------------------------------------------------------------------------------------
    @classmethod
    def map_batches_kwargs(
        cls, constructor_kwargs: dict | None = None, resources: Resources | dict | None = None, batch_size: int = 32
    ) -> dict:
        """Keyword arguments for `ds.map_batches(**kw)` running this operator with the given resources."""
        if isinstance(resources, dict):
            resources = Resources(**resources)
        res = resources or cls.default_resources
        kwargs = dict(constructor_kwargs or {})
        kw: dict[str, Any] = {
            "fn": cls,
            "batch_format": "pyarrow",
            "batch_size": batch_size,
            "num_cpus": res.num_cpus,
            "zero_copy_batch": True,
        }
        if res.num_gpus:
            kw["num_gpus"] = res.num_gpus
        kw["max_restarts"] = kw["max_task_retries"] = int(res.retries)
        kwargs.pop("resources", None)
        # Callable classes always run in an actor pool in Ray Data; the pool size is the concurrency.
        try:
            from ray.data import ActorPoolStrategy

            kw["compute"] = ActorPoolStrategy(size=res.concurrency)
        except ImportError:  # describing a plan does not need Ray
            kw["concurrency"] = res.concurrency
        kw["fn_constructor_kwargs"] = {**kwargs, "resources": res.to_dict()}
        return kw


# --- model loading shared by operators running in the same process ---------------------------------------
@dataclass(unsafe_hash=True)
class ModelSpec(ConfigBase):
    """Which LM + SAE + layer an operator reads features with (also a pipeline config's `model:` section;
    hashable: identical specs share one load). Defaults: `qscope.models.resolve_sae_and_model`."""

    model: str | None = None
    """LM: embedded name, HF dir, .gguf or hub id (default: the SAE's own model, else smollm2-135m)."""
    sae: str | None = None
    """SAE: shipped id (default: the shipped SAE of `model`, else smollm2-135m-l15), SAELens / sparsify dir,
    Qwen-Scope file or hub id."""
    layer: int | None = None
    """Hook layer (default: the SAE's own)."""
    max_length: int = 256
    """Tokens read per text; longer texts are truncated (and counted in the `truncated` column)."""
    allow_model_mismatch: bool = False
    """Read the SAE on a model other than the one it records (a fine-tune, a renamed copy): off, that is an error."""
    device: str = "auto"
    """auto: the actor's GPU when Ray gave it one (num_gpus > 0), else the CPU; or "cpu", "cuda", "cuda:1"."""
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    """auto: bfloat16 on a GPU, float32 on the CPU."""

    @classmethod
    def coerce(cls, spec: ModelSpec | dict | None) -> ModelSpec:
        if spec is None:
            return cls()
        return spec if isinstance(spec, cls) else cls(**spec)

    def spec(self) -> dict:
        """Deprecated: `to_dict()` (the pipeline config's `ModelConfig.spec()`, from before it was this class)."""
        warnings.warn(
            "ModelSpec.spec() / ModelConfig.spec() is deprecated: use to_dict()", DeprecationWarning, stacklevel=2
        )
        return self.to_dict()


@functools.lru_cache(maxsize=4)
def load_model_and_sae(spec: ModelSpec, features_only: bool = False):
    """(lm, sae, layer) for a spec, loaded once per process (operators in one actor/process share it), on the
    spec's device and dtype. features_only: keep only the decoder blocks up to the SAE's layer (reading
    features never runs the rest; generation needs them all)."""
    from qscope.models import LanguageModel, resolve_sae_and_model
    from qscope.models.language_model import resolve_device

    chosen = resolve_sae_and_model(spec.sae, spec.model, spec.layer, spec.allow_model_mismatch)
    device = resolve_device(spec.device)
    lm = LanguageModel.load(
        chosen.model,
        dtype=spec.dtype,
        device=device,
        max_length=spec.max_length,
        max_layer=chosen.layer if features_only else None,
    )
    return lm, chosen.sae.to(device), chosen.layer

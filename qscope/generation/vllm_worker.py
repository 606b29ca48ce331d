"""vLLM worker extension: per-request steering inside stock vLLM's worker process.

Use: `LLM(..., worker_extension_cls="qscope.generation.vllm_worker.SteeringWorkerExtension")`. vLLM mixes this
class into its worker, so `llm.collective_rpc("qscope_load_saes", args=(specs,))` runs the method next to the
model. The engine (`qscope.generation.vllm_engine.VLLMEngine`) names the SAEs once (by path or shipped id: the
worker loads them itself, nothing heavy crosses the RPC) and then only sends requests.

Per-request steering: each request carries its own plan in `SamplingParams.extra_args` (see `REQUEST_KEY`), which
reaches the worker with the request (`model_runner.requests[req_id].sampling_params`). Hooks on the SAE layers stay
installed; each forward they map vLLM's flattened token batch to requests (`model_runner.req_indices`, the
request slot of every scheduled token, and `input_batch.req_ids`), group the tokens by plan and edit only the rows
of each group. Unsteered requests' rows are never touched, so one `generate` call (one continuous batch) mixes
any number of interventions and unsteered requests, prefill and decode tokens alike (chunked prefill included).

How the stream is edited: vLLM's decoder layers return `(hidden, residual)` and the residual stream after the
block is their sum. The edit `delta` is computed from `x = hidden + residual` (what HF calls the block output) by
the same `LayerSteering.delta` the HF engine uses, and returned as `(hidden + delta, residual)`: the next layer's
fused add+norm adds it into the stream. Positions come from the layer's first argument, prompt lengths from
`input_batch.num_prompt_tokens`, so prompt/generated masks match the HF engine's.

Needs vLLM's V1 model runner (`VLLM_USE_V2_MODEL_RUNNER=0`, which the engine sets: the V2 runner, default on CUDA
from vLLM 0.32, keeps its batch layout elsewhere) and `enforce_eager=True`. CUDA graphs / torch.compile would
skip hooks registered after capture. Supporting them needs the steering installed at model-load time (a vLLM
general plugin) with persistent, fixed-shape per-layer buffers (a per-token plan index, stacked steering vectors,
feature rows and mask inputs) that the graph captures and that each step updates in place (`buf.copy_()`),
unused slots with coefficient 0 (adds exactly 0). `LayerSteering.delta` is graph-safe for activate and for
ReLU/JumpReLU suppress/clamp; TopK suppress/clamp is not (it selects tokens with `nonzero()`): under a graph it
would run the full encoder on every token, which a GPU affords, with the same result. Not built here.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
import torch

from qscope.models.language_model import find_module_list

REQUEST_KEY = "qscope"
"""extra_args[REQUEST_KEY] = {"plan_key": str, "plan": SteeringPlan payload} and/or {"record": [skip positions]}."""
MAX_CACHED_PLANS = 256  # compiled plans kept per worker (an LRU: pipelines use a handful of distinct plans)


def sae_fingerprint(sae) -> dict:
    """Cheap identity of an SAE: the config fields its arithmetic depends on, and [numel, sum, sum of squares]
    per tensor (float64, on CPU). The driver and the worker load the same path; comparing fingerprints catches a
    file replaced in between (or a format that does not round-trip)."""
    cfg = sae.cfg
    tensors = {}
    for name, t in sorted(sae.state_dict().items()):
        t = t.detach().to("cpu", torch.float64)
        tensors[name] = [float(t.numel()), float(t.sum()), float((t * t).sum())]
    return {
        "cfg": [cfg.architecture, int(cfg.d_in), int(cfg.d_sae), int(cfg.k or 0), bool(cfg.apply_b_dec_to_input)],
        "tensors": tensors,
    }


def same_fingerprint(a: dict, b: dict, rtol: float = 1e-9) -> bool:
    if list(a["cfg"]) != list(b["cfg"]) or sorted(a["tensors"]) != sorted(b["tensors"]):
        return False
    return all(
        abs(x - y) <= rtol * max(1.0, abs(x), abs(y))
        for k in a["tensors"]
        for x, y in zip(a["tensors"][k], b["tensors"][k])
    )


def _decoder_layers(model) -> torch.nn.ModuleList:
    blocks = find_module_list(model, ("model.layers", "language_model.model.layers", "model.language_model.layers"))
    if blocks is not None:
        return blocks
    raise RuntimeError(f"qscope steering: cannot find decoder layers on {type(model).__name__}")


class _Group:
    """The scheduled tokens of one plan in the current forward: row indices and their position masks."""

    def __init__(self, layers: dict, rows: torch.Tensor, masks: torch.Tensor):
        self.layers, self.rows, self.masks = layers, rows, masks


class _Router:
    """Maps the flattened token batch of each forward to per-request plans (computed once per forward)."""

    def __init__(self, worker):
        self.worker = worker
        self.plans: OrderedDict[str, dict] = OrderedDict()  # plan_key -> {layer: LayerSteering}
        self.request_args: dict[str, dict | None] = {}  # req_id -> its extra_args[REQUEST_KEY] (None: unsteered)
        self._positions = None
        self.groups: list[_Group] = []
        self.record: tuple[torch.Tensor, torch.Tensor] | None = None  # (rows, keep) of tokens to record
        self.recorded: dict[int, torch.Tensor] = {}

    def _args(self, req_id: str) -> dict | None:
        if req_id not in self.request_args:
            if len(self.request_args) > 4 * max(16, len(self.worker.model_runner.requests)):
                live = self.worker.model_runner.requests
                self.request_args = {r: a for r, a in self.request_args.items() if r in live}
            params = self.worker.model_runner.requests[req_id].sampling_params
            extra = getattr(params, "extra_args", None) or {}
            self.request_args[req_id] = extra.get(REQUEST_KEY)
        return self.request_args[req_id]

    def _compiled(self, key: str, payload: dict) -> dict:
        if key in self.plans:
            self.plans.move_to_end(key)
            return self.plans[key]
        from qscope.steering.compiled import SteeringPlan, build_layers

        plan = SteeringPlan.from_payload(payload)
        saes = self.worker._qscope_saes
        missing = [layer for layer in plan.layers if layer not in saes]
        if missing:
            raise RuntimeError(f"qscope steering: no SAE loaded in the worker for layers {missing}")
        device, dtype = self.worker._qscope_device(), self.worker._qscope_dtype()
        self.plans[key] = {layer: s.to(device, dtype) for layer, s in build_layers(plan, saes).items()}
        while len(self.plans) > MAX_CACHED_PLANS:
            self.plans.popitem(last=False)
        return self.plans[key]

    def reset(self) -> None:
        self._positions, self.groups, self.record = None, [], None

    def step(self, positions: torch.Tensor) -> _Router:
        """Recompute the grouping when a new forward starts (one `positions` tensor is shared by all layers)."""
        if positions is self._positions:
            return self
        self._positions, self.groups, self.record = positions, [], None
        runner = self.worker.model_runner
        batch = runner.input_batch
        req_ids = batch.req_ids[: batch.num_reqs]
        args = [self._args(r) for r in req_ids]
        if not any(args):
            return self  # the common case: nothing to do for this forward
        n_tokens = int(runner.num_scheduled_tokens.np[: len(req_ids)].sum())
        slot_of_token = runner.req_indices.np[:n_tokens].copy()  # request slot of every scheduled token
        pos = positions[0] if positions.dim() == 2 else positions  # M-RoPE: row 0 is the text position
        device = pos.device
        by_key: dict[str, list[int]] = {}
        recording: dict[int, list[int]] = {}
        for slot, a in enumerate(args):
            if a and a.get("plan"):
                by_key.setdefault(a["plan_key"], []).append(slot)
            if a and a.get("record") is not None:
                recording[slot] = a["record"]
        from qscope.steering.compiled import position_masks

        prompt_lens = batch.num_prompt_tokens[: len(req_ids)]
        for key, slots in by_key.items():
            rows_np = np.flatnonzero(np.isin(slot_of_token, slots))
            if not rows_np.size:
                continue
            rows = torch.from_numpy(rows_np).to(device)
            lens = torch.from_numpy(prompt_lens[slot_of_token[rows_np]].astype(np.int64)).to(device)
            payload = next(a for a in args if a and a.get("plan_key") == key)["plan"]
            self.groups.append(_Group(self._compiled(key, payload), rows, position_masks(pos[rows], lens)))
        if recording:
            rows_np = np.flatnonzero(np.isin(slot_of_token, list(recording)))
            positions_np = pos[torch.from_numpy(rows_np).to(device)].cpu().numpy() if rows_np.size else rows_np
            keep = [int(p) not in set(recording[int(s)]) for s, p in zip(slot_of_token[rows_np], positions_np)]
            self.record = (torch.from_numpy(rows_np).to(device), torch.tensor(keep, dtype=torch.bool, device=device))
        return self

    def edit(self, layer: int, hidden: torch.Tensor, residual: torch.Tensor | None) -> torch.Tensor | None:
        """The steered `hidden` for this layer, or None when no request of this forward steers it."""
        active = [g for g in self.groups if layer in g.layers]
        if not active and (self.record is None or layer not in self.worker._qscope_saes):
            return None
        x = hidden if residual is None else hidden + residual
        if self.record is not None and layer in self.worker._qscope_saes:
            self._record(layer, x)
        for g in active:  # in place: `hidden` is this layer's fresh output (eager mode), and copies cost per group
            hidden.index_add_(0, g.rows, g.layers[layer].delta(x[g.rows], g.masks))
        return hidden

    def _record(self, layer: int, x: torch.Tensor) -> None:
        # Same arithmetic as steering.calibration.measure_typical_max: dense SAE codes, max per feature.
        rows, keep = self.record
        rows = rows[keep]
        if not rows.numel():
            return
        sae = self.worker._qscope_saes[layer]
        best = sae.encode_dense(x[rows].to(sae.W_enc.dtype)).max(dim=0).values.float()
        prev = self.recorded.get(layer)
        self.recorded[layer] = best if prev is None else torch.maximum(prev, best)


class SteeringWorkerExtension:
    """Methods callable through `LLM.collective_rpc`; all state lives on the worker (`self` is the worker)."""

    def qscope_load_saes(self, specs: dict[str, dict[str, Any]]) -> dict[str, dict]:
        """specs: {str(layer): {"spec": path or shipped id, "layer": int | None, "fingerprint": dict}}.

        Loads each SAE with `qscope.sae.load_sae` (so it must be readable on this node), checks it against the
        driver's fingerprint, and installs one hook per SAE layer. Returns {layer: fingerprint}."""
        from qscope.sae import load_sae

        runner = self.model_runner
        if not (hasattr(runner, "req_indices") and hasattr(runner, "input_batch")):
            raise RuntimeError("qscope steering needs vLLM's V1 model runner: set VLLM_USE_V2_MODEL_RUNNER=0")
        saes, prints = {}, {}
        for layer, item in specs.items():
            sae = load_sae(item["spec"], layer=item.get("layer"))
            prints[layer] = sae_fingerprint(sae)
            if item.get("fingerprint") and not same_fingerprint(prints[layer], item["fingerprint"]):
                raise RuntimeError(
                    f"qscope steering: the SAE at {item['spec']!r} differs from the driver's copy "
                    "(file changed between the two loads?)"
                )
            saes[int(layer)] = sae.to(self._qscope_device()).eval().requires_grad_(False)
        self.qscope_unload()
        self._qscope_saes = saes
        self._qscope_router = _Router(self)
        layers = _decoder_layers(runner.model)
        router = self._qscope_router
        # A new forward always regroups, even if the runner hands the layers the same `positions` object again.
        self._qscope_handles = [runner.model.register_forward_pre_hook(lambda *_: router.reset())]
        self._qscope_handles += [
            layers[layer].register_forward_hook(self._qscope_hook(layer), with_kwargs=True) for layer in sorted(saes)
        ]
        return prints

    def _qscope_hook(self, layer: int):
        # Decoder layers are called as layer(positions, hidden_states, residual); the decoder stack itself is
        # wrapped by @support_torch_compile, whose __call__ skips module hooks, so positions are read here.
        def hook(_module, args, kwargs, output):
            positions = args[0] if args else kwargs["positions"]
            hidden, residual = output
            steered = self._qscope_router.step(positions).edit(layer, hidden, residual)
            return None if steered is None else (steered, residual)

        return hook

    def qscope_take_record(self) -> dict[str, list[float]]:
        """Per SAE layer, the max dense activation of each feature over the recorded tokens; resets the record."""
        recorded, self._qscope_router.recorded = self._qscope_router.recorded, {}
        return {str(layer): t.cpu().tolist() for layer, t in recorded.items()}

    def qscope_unload(self) -> None:
        for h in getattr(self, "_qscope_handles", []):
            h.remove()
        self._qscope_handles, self._qscope_saes = [], {}

    def qscope_info(self) -> dict:
        router = getattr(self, "_qscope_router", None)
        return {
            "model": type(self.model_runner.model).__name__,
            "n_layers": len(_decoder_layers(self.model_runner.model)),
            "saes": sorted(getattr(self, "_qscope_saes", {})),
            "hooked_layers": sorted(getattr(self, "_qscope_saes", {})),  # one hook per SAE layer, always on
            "cached_plans": len(router.plans) if router else 0,
            "runner": type(self.model_runner).__name__,
            "torch_threads": torch.get_num_threads(),
        }

    def _qscope_device(self) -> torch.device:
        return next(self.model_runner.model.parameters()).device

    def _qscope_dtype(self) -> torch.dtype:
        return next(self.model_runner.model.parameters()).dtype

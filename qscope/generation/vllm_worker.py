"""vLLM worker extension: steering inside stock vLLM's worker process.

Use: `LLM(..., worker_extension_cls="qscope.generation.vllm_worker.SteeringWorkerExtension")`. vLLM mixes this
class into its worker, so `llm.collective_rpc("qscope_set_steering", args=(payload,))` runs the method next to the
model. The engine (`qscope.generation.vllm_engine.VLLMEngine`) sends the SAEs once (`qscope_load_saes`), then sets
the steering plan before each group of requests and clears it after: the intervention applies to every request
of that `generate` call (one request group), never to another call's requests.

How the stream is edited: vLLM's decoder layers return `(hidden, residual)` and the residual stream after the
block is their sum. The edit `delta` is computed from `x = hidden + residual` (what HF calls the block output) by
the same `LayerSteering.delta` the HF engine uses, and returned as `(hidden + delta, residual)`: the next layer's
fused add+norm adds it into the stream.

Positions: the hook reads each token's position (the layer's first argument) and, from the model runner's per-token
request index (`req_indices`) and the batch's `num_prompt_tokens`, its request's prompt length, so
prompt/generated masks are correct in mixed prefill+decode batches (chunked prefill included).

Limits (documented, checked by the engine): needs `enforce_eager=True`. With CUDA graphs or torch.compile
the hooks, registered after the model was captured/compiled, would be silently skipped (or force recompiles).
The known way to support graphs is to install the steering module at model-load time (a vLLM general plugin)
with *persistent* per-layer buffers (steering vectors, feature rows, mask inputs) of fixed shape that the graph
captures, and to update them in place (`buf.copy_(...)`) through `collective_rpc` instead of swapping hooks (a
fixed maximum of edits per layer, unused slots with coefficient 0, which adds exactly 0). `LayerSteering.delta` is
graph-safe for activate and for ReLU/JumpReLU suppress/clamp; TopK suppress/clamp is not: it selects the tokens that
need the full encoder with `nonzero()` and branches on their count (the CPU saving, see `feature_acts`). Under a
graph it would run the full encoder on every token of the fixed-size batch (`pre_acts` -> `topk` k-th value ->
compare), which a GPU affords; the result is the same. Not built here (no GPU on the development machines).
"""

from __future__ import annotations

from typing import Any

import torch


def tensor_to_wire(t: torch.Tensor) -> dict:
    t = t.detach().cpu().contiguous()
    return {"dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape),
            "data": t.view(torch.uint8).numpy().tobytes() if t.numel() else b""}


def tensor_from_wire(w: dict) -> torch.Tensor:
    dtype = getattr(torch, w["dtype"])
    raw = torch.frombuffer(bytearray(w["data"]), dtype=torch.uint8) if w["data"] else torch.zeros(0, dtype=torch.uint8)
    return raw.view(dtype).reshape(w["shape"]).clone()


def _decoder_layers(model) -> torch.nn.ModuleList:
    for path in ("model.layers", "language_model.model.layers", "model.language_model.layers"):
        obj = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
        if isinstance(obj, torch.nn.ModuleList):
            return obj
    raise RuntimeError(f"qscope steering: cannot find decoder layers on {type(model).__name__}")


class SteeringWorkerExtension:
    """Methods callable through `LLM.collective_rpc`; all state lives on the worker (`self` is the worker)."""

    def qscope_load_saes(self, payload: dict[str, dict[str, Any]]) -> list[int]:
        """payload: {str(layer): {"cfg": SAEConfig dict, "state": state_dict}}; replaces previously loaded SAEs."""
        from qscope.sae import SAE, SAEConfig

        saes = {}
        device = self._qscope_device()
        for layer, item in payload.items():
            sae = SAE.from_config(SAEConfig.from_dict(dict(item["cfg"])))
            sae.load_state_dict({k: tensor_from_wire(v) for k, v in item["state"].items()})
            saes[int(layer)] = sae.to(device).eval().requires_grad_(False)
        self._qscope_saes = saes
        self.qscope_clear_steering()
        return sorted(saes)

    def qscope_set_steering(self, plan_payload: dict | None) -> list[int]:
        """Install the plan's hooks (after removing any previous ones). Returns the hooked layers."""
        from qscope.steering.compiled import SteeringPlan, build_layers

        self.qscope_clear_steering()
        if not plan_payload:
            return []
        plan = SteeringPlan.from_payload(plan_payload)
        saes = getattr(self, "_qscope_saes", {})
        missing = [layer for layer in plan.layers if layer not in saes]
        if missing:
            raise RuntimeError(f"qscope steering: no SAE loaded in the worker for layers {missing}")
        model = self.model_runner.model
        layers = _decoder_layers(model)
        device = self._qscope_device()
        dtype = next(model.parameters()).dtype
        steerings = {layer: s.to(device, dtype) for layer, s in build_layers(plan, saes).items()}
        needs_prompt_lens = any(e.positions != "all" for edits in plan.layers.values() for e in edits)
        runner = self.model_runner

        def masks_for(positions: torch.Tensor) -> torch.Tensor:
            from qscope.steering.compiled import position_masks

            n = positions.shape[-1]
            if needs_prompt_lens:
                req = torch.from_numpy(runner.req_indices.np[:n].copy())
                prompt_lens = runner.input_batch.num_prompt_tokens_cpu_tensor[req].to(positions.device)
            else:
                prompt_lens = torch.zeros_like(positions)
            return position_masks(positions, prompt_lens)

        def make_hook(steering):
            # Decoder layers are called as layer(positions, hidden_states, residual); the decoder stack itself
            # is wrapped by @support_torch_compile, whose __call__ skips module hooks, so positions are read here.
            def hook(_module, args, kwargs, output):
                positions = args[0] if args else kwargs["positions"]
                hidden, residual = output
                x = hidden if residual is None else hidden + residual
                delta = steering.delta(x, masks_for(positions))
                return hidden + delta, residual

            return hook

        self._qscope_handles = [
            layers[layer].register_forward_hook(make_hook(s), with_kwargs=True) for layer, s in steerings.items()
        ]
        return sorted(steerings)

    def qscope_clear_steering(self) -> None:
        for h in getattr(self, "_qscope_handles", []):
            h.remove()
        self._qscope_handles = []

    def qscope_info(self) -> dict:
        model = self.model_runner.model
        return {
            "model": type(model).__name__,
            "n_layers": len(_decoder_layers(model)),
            "saes": sorted(getattr(self, "_qscope_saes", {})),
            "steered_layers": len(getattr(self, "_qscope_handles", [])),
            "has_req_indices": hasattr(self.model_runner, "req_indices"),
            "torch_threads": torch.get_num_threads(),
        }

    def _qscope_device(self) -> torch.device:
        return next(self.model_runner.model.parameters()).device

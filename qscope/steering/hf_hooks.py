"""Compile steering onto a Hugging Face model as forward hooks (a context manager; hooks are always removed).

Token positions are tracked here rather than read from `position_ids`, whose presence depends on the
transformers version and on whether `generate` derives them from the attention mask: a pre-hook on the decoder
stack counts the tokens processed so far in the (left-padded) batch, and each row's real position is
`padded index - left padding`. Positions are therefore the same in HF and vLLM (0 = first prompt token).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

import torch

from qscope.steering.compiled import LayerSteering, position_masks


class _Cursor:
    """How many tokens of the padded batch the decoder stack has processed before the current forward."""

    def __init__(self):
        self.start = 0
        self.width = 0

    def advance(self, width: int) -> None:
        self.start += self.width
        self.width = width


def _stack_width(args, kwargs) -> int:
    for name in ("input_ids", "inputs_embeds"):
        t = kwargs.get(name)
        if t is not None:
            return int(t.shape[1])
    for t in args:
        if isinstance(t, torch.Tensor):
            return int(t.shape[1])
    raise RuntimeError("steering: cannot find input_ids / inputs_embeds in the decoder-stack call")


@contextlib.contextmanager
def steer_hf(lm, layers: Mapping[int, LayerSteering], prompt_lens: torch.Tensor, left_pad: torch.Tensor):
    """Steer `lm` (a `LanguageModel`) while the block runs.

    prompt_lens / left_pad: [batch] real prompt lengths and left-padding amounts of the batch about to be
    generated. Generation must start with an empty cache (one prefill of the padded prompts, then decode steps).
    """
    if not layers:
        yield
        return
    cursor = _Cursor()
    device = lm.device
    prompt_lens = prompt_lens.to(device).view(-1, 1)
    left_pad = left_pad.to(device).view(-1, 1)
    steerings = {layer: s.to(device) for layer, s in layers.items()}
    state: dict[str, torch.Tensor] = {}

    def stack_pre_hook(_module, args, kwargs):
        cursor.advance(_stack_width(args, kwargs))
        padded = cursor.start + torch.arange(cursor.width, device=device).view(1, -1)
        positions = padded - left_pad  # [batch, width]; negative on padding (masked: never steered)
        state["masks"] = position_masks(positions, prompt_lens)  # [3, batch, width]

    def make_hook(steering: LayerSteering):
        def hook(_module, _inputs, output):
            hidden = output[0] if isinstance(output, (tuple, list)) else output
            b, t, d = hidden.shape
            masks = state["masks"]
            if masks.shape[1:] != (b, t):
                raise RuntimeError(
                    f"steering: batch shape {(b, t)} does not match the tracked {tuple(masks.shape[1:])}"
                )
            delta = steering.delta(hidden.reshape(b * t, d), masks.reshape(3, b * t)).reshape(b, t, d)
            steered = hidden + delta
            if isinstance(output, tuple):
                return (steered,) + tuple(output[1:])
            if isinstance(output, list):
                return [steered] + list(output[1:])
            return steered

        return hook

    stack = getattr(lm.model, "model", lm.model)
    handles = [stack.register_forward_pre_hook(stack_pre_hook, with_kwargs=True)]
    try:
        for layer, steering in steerings.items():
            handles.append(lm.layers[layer].register_forward_hook(make_hook(steering)))
        yield
    finally:
        for h in handles:
            h.remove()

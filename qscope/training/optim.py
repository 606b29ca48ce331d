"""Adam (Kingma & Ba), the same update as torch.optim.Adam(foreach=False, amsgrad=False, weight_decay=0).

Why our own: constructing any torch.optim optimizer imports torch._dynamo (seconds: more than a whole small
training run, bench/README.md), and the 25 lines below are all SAE training needs. Its state_dict holds tensors and
numbers only, so checkpoints load with torch.load(weights_only=True).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch


class Adam:
    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        self.params = list(params)
        self.lr, self.betas, self.eps = lr, tuple(betas), eps
        self.t = 0
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.t += 1
        b1, b2 = self.betas
        bias1, bias2 = 1 - b1**self.t, 1 - b2**self.t
        for p, m, v in zip(self.params, self.exp_avg, self.exp_avg_sq):
            if p.grad is None:
                continue
            g = p.grad
            m.lerp_(g, 1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            denom = (v.sqrt() / math.sqrt(bias2)).add_(self.eps)
            p.addcdiv_(m, denom, value=-self.lr / bias1)

    def state_dict(self) -> dict:
        return {"t": self.t, "lr": self.lr, "exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq}

    def load_state_dict(self, state: dict) -> None:
        self.t, self.lr = int(state["t"]), float(state["lr"])
        for mine, theirs in zip(self.exp_avg + self.exp_avg_sq, state["exp_avg"] + state["exp_avg_sq"]):
            mine.copy_(theirs)

"""Options shared by several subcommands (model / SAE selection, JSON output)."""

from __future__ import annotations

import argparse
import json
import sys


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="model: embedded name (default smollm2-135m), HF dir, .gguf, hub id")
    p.add_argument("--sae", default=None, help="SAE: shipped id (default), SAELens/sparsify dir, Qwen-Scope file or hub id")
    p.add_argument("--layer", type=int, default=None, help="hook layer (default: the SAE's own layer)")
    p.add_argument("--max-length", type=int, default=512, help="truncate texts to this many tokens (counted)")


def add_json_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")


def load_model_and_sae(args):
    """Load the LM and one SAE from CLI args; the SAE's recorded model is the default model."""
    from qscope.models import LanguageModel
    from qscope.sae import load_sae

    sae = load_sae(args.sae, layer=args.layer)
    model = args.model or _default_model_for(sae)
    lm = LanguageModel.load(model, max_length=args.max_length)
    layer = args.layer if args.layer is not None else sae.cfg.hook_layer
    return lm, sae, layer


def _default_model_for(sae) -> str | None:
    from qscope.models import EMBEDDED_MODELS

    name = sae.cfg.model_name
    return name if name in EMBEDDED_MODELS else None


def emit_json(obj) -> None:
    json.dump(obj, sys.stdout, ensure_ascii=False)
    sys.stdout.write("\n")

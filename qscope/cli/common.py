"""Options shared by several subcommands (model / SAE selection, starting a pipeline) and the one JSON output channel.

`--json` promises exactly one JSON document on stdout. Libraries we call print wherever they like: vLLM logs to
stdout, C++ code writes to file descriptor 1, child processes (vLLM's engine core, Ray workers) inherit it. So in
JSON mode the whole command runs with file descriptor 1 pointing at stderr and `sys.stdout` set to `sys.stderr`;
only `emit_json` writes to the real stdout, through a descriptor saved aside before the switch.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import sys
from pathlib import Path
from typing import Any, TextIO


def add_model_args(p: argparse.ArgumentParser, max_length: int | None = 512) -> None:
    """--model, --sae, --layer, --max-length, --allow-model-mismatch (max_length None: the config's default)."""
    p.add_argument(
        "--model",
        default=None,
        help="model: embedded name, HF dir, .gguf, hub id[@revision] (default: the SAE's own model)",
    )
    p.add_argument(
        "--sae",
        default=None,
        help="SAE: shipped id (default: the shipped SAE of --model, else smollm2-135m-l15), "
        "SAELens/sparsify dir, Qwen-Scope file or hub id[@revision]",
    )
    p.add_argument("--layer", type=int, default=None, help="hook layer (default: the SAE's own layer)")
    default = max_length if max_length is not None else "the config's model.max_length"
    p.add_argument(
        "--max-length",
        type=int,
        default=max_length,
        help=f"truncate texts to this many tokens (counted; default: {default})",
    )
    add_model_mismatch_arg(p)


MODEL_ARG_KEYS = {
    "model": "model.model",
    "sae": "model.sae",
    "layer": "model.layer",
    "max_length": "model.max_length",
    "allow_model_mismatch": "model.allow_model_mismatch",
}
"""`add_model_args`' flags -> the pipeline config keys they set."""


def add_pipeline_args(p: argparse.ArgumentParser, inputs_required: bool = False, out_help: str | None = None) -> None:
    """The flags of every command that starts a pipeline (`qscope run`, `qscope classify`, `python -m
    qscope.pipelines.X`): inputs and output, where it runs, `--set`, `--plan`, `--json`. Each overrides the config
    (`PIPELINE_ARG_KEYS`; `qscope.pipelines.launch`)."""
    p.add_argument(
        "--seeds",
        required=inputs_required,
        default=None,
        help="seed file" + ("" if inputs_required else " (overrides the config)"),
    )
    p.add_argument(
        "--corpus",
        required=inputs_required,
        default=None,
        help="corpus file, directory or glob" + ("" if inputs_required else " (overrides the config)"),
    )
    p.add_argument(
        "--out",
        required=inputs_required,
        default=None,
        help=out_help or "output directory / file (overrides the config)",
    )
    p.add_argument(
        "--address",
        default=None,
        help="Ray cluster address; 'local' = a private Ray (default: $RAY_ADDRESS, else the cluster "
        "running on this machine, else a private one)",
    )
    p.add_argument(
        "--executor", choices=["ray", "local"], default=None, help="ray (default) or local (in-process, no Ray)"
    )
    p.add_argument(
        "--reencode",
        action="store_true",
        help="rebuild a signature store made with other encoder settings instead of refusing it",
    )
    add_set_arg(p)
    p.add_argument("--plan", action="store_true", help="print the plan (stages, what each reads and makes) and exit")
    add_json_arg(p)


PIPELINE_ARG_KEYS = {"seeds": "seeds", "corpus": "corpus", "out": "out", "executor": "executor", "reencode": "reencode"}
"""`add_pipeline_args`' flags -> the config keys they set."""


def add_set_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="set",
        help="override any config key, dotted for sections (repeatable): --set synthesis.n_samples=8 "
        "--set model.layer=null; values are read as YAML (numbers, true/false, null, [lists])",
    )


def config_overrides(args, arg_keys: dict[str, str]) -> list:
    """The overrides a command line makes: each given flag in `arg_keys` (flag -> config key, its value as
    given), then every `--set KEY=VALUE`, in order (a later one wins)."""
    given = [
        (key, getattr(args, flag))
        for flag, key in arg_keys.items()
        if getattr(args, flag, None) is not None and getattr(args, flag) is not False
    ]
    return given + list(getattr(args, "set", None) or [])


def add_model_mismatch_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--allow-model-mismatch",
        action="store_true",
        help="use --model even though the SAE records another model (a fine-tune, a renamed copy)",
    )


def add_json_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--json",
        action="store_true",
        help="exactly one JSON document on stdout (errors too); all logs and progress go to stderr",
    )


def sae_spec(args) -> str:
    """The SAE a command reads: --sae, else the shipped SAE of --model (`--model qwen2.5-coder-0.5b` alone picks
    its own SAE), else the embedded default's (`qscope.models.resolve_sae_and_model`)."""
    from qscope.sae import default_sae_id

    return args.sae or default_sae_id(getattr(args, "model", None))


def load_model_and_sae(args):
    """Load one SAE and its model from CLI args (`qscope.models.resolve_sae_and_model`: the SAE's own model and
    layer unless --model / --layer)."""
    from qscope.models import LanguageModel, check_sae_fits, resolve_sae_and_model

    chosen = resolve_sae_and_model(args.sae, args.model, args.layer, getattr(args, "allow_model_mismatch", False))
    lm = LanguageModel.load(chosen.model, max_length=args.max_length)
    check_sae_fits(lm, chosen.sae)
    return lm, chosen.sae, chosen.layer


def feature_explorer(args, **options):
    """(`FeatureExplorer`, lm, sae, layer) for the model and SAE the arguments name; `options` go to the explorer."""
    from qscope.quickstart import FeatureExplorer, SAEModel

    lm, sae, layer = load_model_and_sae(args)
    return FeatureExplorer(SAEModel(lm, {layer: sae}, {layer: sae_spec(args)}), layer, **options), lm, sae, layer


# --- the JSON channel ----------------------------------------------------------------------------------------
@dataclasses.dataclass
class _Channel:
    stream: TextIO
    emitted: bool = False


_channel: _Channel | None = None


@contextlib.contextmanager
def json_stdout(enabled: bool = True, restore: bool = True):
    """Reserve stdout for one JSON document (written by `emit_json`) while the block runs.

    Everything else written to stdout, by Python code, C code or child processes started inside the block, goes
    to stderr. restore=False leaves file descriptor 1 on stderr afterwards: a process that runs only this command
    keeps late writers (atexit hooks, engine shutdown logs, Ray's log thread) off stdout too.
    """
    global _channel
    if not enabled:
        yield None
        return
    _flush(sys.stdout, sys.__stdout__)
    _flush_c_stdio()
    saved = os.dup(1)
    try:
        backed_by_fd1 = sys.stdout.fileno() == 1
    except (AttributeError, OSError, ValueError):  # replaced by an in-memory stream (pytest capsys, a notebook)
        backed_by_fd1 = False
    # The JSON goes where stdout pointed when we were called: a private duplicate of fd 1, or the Python stream
    # that replaced it.
    stream = os.fdopen(os.dup(saved), "w", encoding="utf-8") if backed_by_fd1 else sys.stdout
    previous, outer = sys.stdout, _channel
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    _channel = _Channel(stream)
    try:
        yield _channel
    finally:
        _channel = outer
        sys.stdout = previous
        _flush(stream, sys.__stdout__)
        if backed_by_fd1:
            stream.close()
        if restore:
            _flush(previous)
            _flush_c_stdio()  # C code's buffered stdout was written during the block: it belongs on stderr
            os.dup2(saved, 1)
        os.close(saved)


def emit_json(obj: Any) -> None:
    """Write `obj` as the command's one JSON document (strict JSON: NaN / inf become null)."""
    text = json.dumps(_jsonable(obj), ensure_ascii=False, allow_nan=False)
    channel = _channel
    if channel is None:  # not in --json mode: plain stdout
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
        return
    if channel.emitted:
        raise RuntimeError("a --json command wrote a second JSON document; it must write exactly one")
    channel.stream.write(text + "\n")
    channel.stream.flush()
    channel.emitted = True


def json_emitted() -> bool:
    """Whether the current --json command has written its document."""
    return _channel is not None and _channel.emitted


def _jsonable(obj: Any) -> Any:
    # Results carry numpy scalars, paths and the odd inf perplexity; JSON readers such as jq reject NaN/Infinity.
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _jsonable(dataclasses.asdict(obj))
    if getattr(obj, "ndim", None) == 0 and callable(getattr(obj, "item", None)):  # numpy / torch scalars
        return _jsonable(obj.item())
    tolist = getattr(obj, "tolist", None)  # numpy arrays, torch tensors
    if callable(tolist):
        return _jsonable(tolist())
    return str(obj)


def _flush(*streams) -> None:
    for s in streams:
        with contextlib.suppress(Exception):
            if s is not None:
                s.flush()


def _flush_c_stdio() -> None:
    # libc buffers C-level stdout (fully, when it is not a terminal); flushing here sends what C code wrote to the
    # descriptor it was meant for before that descriptor is switched.
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None).fflush(None)

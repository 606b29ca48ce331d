"""The `qscope` command. Each subcommand lives in its own module exposing `register(subparsers)`.

Adding a command: write qscope/cli/<name>.py with `register(sub)` that adds a parser and sets
`func=run(args) -> int`, then list the module in SUBCOMMANDS. Imports stay lazy so `qscope --help` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys

from qscope.errors import QscopeError

SUBCOMMANDS = ["features", "discover", "dashboard", "inspect_text", "eval_sae", "run", "classify", "steer", "sweep", "train_sae"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qscope", description="SAE feature-space dataset expansion")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f"qscope.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr)
    try:
        return int(args.func(args) or 0)
    except QscopeError as exc:
        # Bad input: one clear line (JSON when asked), no traceback.
        if getattr(args, "json", False):
            print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
        else:
            print(f"qscope: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

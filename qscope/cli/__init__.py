"""The `qscope` command. Each subcommand lives in its own module exposing `register(subparsers)`.

Adding a command: write qscope/cli/<name>.py with `register(sub)` that adds a parser and sets
`func=run(args) -> int`, then list the module in SUBCOMMANDS. Imports stay lazy so `qscope --help` is instant.
A command with `--json` (`common.add_json_arg`) reports through `common.emit_json`; `main` guarantees the rest:
exactly one JSON document on stdout, errors included, and every other byte on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback

from qscope.errors import QscopeError

SUBCOMMANDS = ["features", "discover", "dashboard", "inspect_text", "eval_sae", "run", "classify", "steer", "sweep", "train_sae"]


class UsageError(QscopeError):
    """Bad command-line arguments (raised instead of argparse's exit in --json mode)."""


class _Parser(argparse.ArgumentParser):
    """argparse that, when the command line asks for --json, raises UsageError instead of exiting."""

    json_requested = False

    def error(self, message: str):
        if _Parser.json_requested:
            self.print_usage(sys.stderr)
            raise UsageError(f"{self.prog}: {message}")
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="qscope", description="SAE feature-space dataset expansion")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True)  # sub-parsers are _Parser too
    for name in SUBCOMMANDS:
        importlib.import_module(f"qscope.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command. argv None: this process's command line; fd 1 then stays on stderr until exit in --json
    mode, so output written while the process shuts down (vLLM, Ray) cannot reach stdout either."""
    from qscope.cli.common import emit_json, json_emitted, json_stdout

    args_list = sys.argv[1:] if argv is None else list(argv)
    wants_json = "--json" in args_list[: args_list.index("--")] if "--" in args_list else "--json" in args_list
    _Parser.json_requested = wants_json
    with json_stdout(wants_json, restore=argv is not None):
        try:
            args = build_parser().parse_args(args_list)
        except UsageError as exc:
            emit_json({"error": "UsageError", "message": str(exc)})
            return 2
        finally:
            _Parser.json_requested = False
        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr)
        try:
            rc = int(args.func(args) or 0)
        except QscopeError as exc:
            # Bad input: one clear line (JSON when asked), no traceback.
            _report(wants_json, json_emitted(), type(exc).__name__, str(exc))
            return 2
        except KeyboardInterrupt:
            _report(wants_json, json_emitted(), "KeyboardInterrupt", "interrupted")
            return 130
        except Exception as exc:  # noqa: BLE001 - a bug: traceback on stderr, and still one JSON document
            if not wants_json:
                raise
            traceback.print_exc(file=sys.stderr)
            _report(True, json_emitted(), type(exc).__name__, str(exc))
            return 1
        if wants_json and not json_emitted():
            emit_json({"error": "InternalError", "message": f"`qscope {args.command}` produced no JSON result"})
            return 1
        return rc


def _report(as_json: bool, already_emitted: bool, kind: str, message: str) -> None:
    from qscope.cli.common import emit_json

    if as_json and not already_emitted:
        emit_json({"error": kind, "message": message})
    else:
        print(f"qscope: error: {message}", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

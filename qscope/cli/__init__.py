"""The `qscope` command. Each subcommand lives in its own module exposing `register(subparsers)`.

Adding a command: write qscope/cli/<name>.py with `register(sub)` that adds a parser and sets
`func=run(args) -> int`, then list the module in SUBCOMMANDS. Imports stay lazy so `qscope --help` is instant.
A command with `--json` (`common.add_json_arg`) reports through `common.emit_json`; `run_command_line` guarantees
the rest: exactly one JSON document on stdout, errors included, every other byte on stderr, and the exit status
below. `python -m qscope.pipelines.X` runs through the same function, so every entry point exits the same way.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback
from collections.abc import Callable

from qscope.errors import QscopeError

EXIT_OK = 0
EXIT_BUG = 1
"""An unexpected exception (a bug): the traceback goes to stderr."""
EXIT_BAD_INPUT = 2
"""Bad arguments, input files or configs (`QscopeError`): one clear line, no traceback."""
EXIT_PARTIAL = 3
"""The run finished but left some input out (mine: a corpus file that could not be read is quarantined)."""
EXIT_INTERRUPTED = 130

SUBCOMMANDS = [
    "features",
    "discover",
    "dashboard",
    "inspect_text",
    "eval_sae",
    "run",
    "classify",
    "steer",
    "sweep",
    "train_sae",
]


class UsageError(QscopeError):
    """Bad command-line arguments (raised instead of argparse's exit in --json mode)."""


class CommandParser(argparse.ArgumentParser):
    """argparse that, when the command line asks for --json, raises UsageError instead of exiting."""

    json_requested = False

    def error(self, message: str):
        if CommandParser.json_requested:
            self.print_usage(sys.stderr)
            raise UsageError(f"{self.prog}: {message}")
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="qscope", description="SAE feature-space dataset expansion")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True)  # sub-parsers are CommandParsers too
    for name in SUBCOMMANDS:
        importlib.import_module(f"qscope.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one `qscope` command (argv None: this process's command line)."""
    return run_command_line(build_parser, argv)


def run_command_line(make_parser: Callable[[], argparse.ArgumentParser], argv: list[str] | None = None) -> int:
    """Parse `argv` with `make_parser()` (a `CommandParser` whose commands set `func(args) -> exit status`), run
    the command and map its outcome to an exit status. argv None: this process's command line; fd 1 then stays on
    stderr until exit in --json mode, so output written while the process shuts down (vLLM, Ray) cannot reach
    stdout either."""
    from qscope.cli.common import emit_json, json_emitted, json_stdout

    args_list = sys.argv[1:] if argv is None else list(argv)
    wants_json = "--json" in args_list[: args_list.index("--")] if "--" in args_list else "--json" in args_list
    CommandParser.json_requested = wants_json
    with json_stdout(wants_json, restore=argv is not None):
        try:
            parser = make_parser()
            args = parser.parse_args(args_list)
        except UsageError as exc:
            emit_json({"error": "UsageError", "message": str(exc)})
            return EXIT_BAD_INPUT
        finally:
            CommandParser.json_requested = False
        logging.basicConfig(
            level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING, stream=sys.stderr
        )
        try:
            rc = int(args.func(args) or 0)
        except QscopeError as exc:
            # Bad input: one clear line (JSON when asked), no traceback.
            _report(wants_json, json_emitted(), type(exc).__name__, str(exc))
            return EXIT_BAD_INPUT
        except KeyboardInterrupt:
            _report(wants_json, json_emitted(), "KeyboardInterrupt", "interrupted")
            return EXIT_INTERRUPTED
        except Exception as exc:  # noqa: BLE001 - a bug: traceback on stderr, and still one JSON document
            if not wants_json:
                raise
            traceback.print_exc(file=sys.stderr)
            _report(True, json_emitted(), type(exc).__name__, str(exc))
            return EXIT_BUG
        if wants_json and not json_emitted():
            name = " ".join(filter(None, [parser.prog, getattr(args, "command", None)]))
            emit_json({"error": "InternalError", "message": f"`{name}` produced no JSON result"})
            return EXIT_BUG
        return rc


def _report(as_json: bool, already_emitted: bool, kind: str, message: str) -> None:
    from qscope.cli.common import emit_json

    if as_json and not already_emitted:
        emit_json({"error": kind, "message": message})
    else:
        print(f"qscope: error: {message}", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""`python -m qscope.training.build_cache`: fill or resume an activation cache from the command line.

A separate module from `qscope.training.cache` so that `python -m` does not import the module it runs twice.
"""

from __future__ import annotations

import json
import sys

import torch

from qscope.training.cache import cache_activations


def main(argv: list[str] | None = None) -> int:
    """`python -m qscope.training.build_cache OUT CORPUS --layers 12 [--model M] [--texts-from N --max-texts N]`."""
    import argparse
    import logging

    p = argparse.ArgumentParser(
        prog="python -m qscope.training.build_cache",
        description="Fill (or resume) an activation cache from a text corpus.",
    )
    p.add_argument("out", help="cache directory")
    p.add_argument("corpus", help=".parquet / .jsonl corpus with a text column (and a split column)")
    p.add_argument("--layers", required=True, help="comma-separated hook layers, e.g. 12")
    p.add_argument("--model", default=None, help="model spec (default: the embedded default)")
    p.add_argument("--split", default="train", help="corpus split ('' = all rows)")
    p.add_argument("--max-tokens", type=int, default=None)
    p.add_argument("--texts-from", type=int, default=0, help="first text of the split to read")
    p.add_argument("--max-texts", type=int, default=None, help="texts to read from --texts-from on")
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--shard-texts", type=int, default=256, help="texts per shard (the resume granularity)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (1 per process on a busy machine)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    summary = cache_activations(
        args.out,
        args.corpus,
        [int(x) for x in args.layers.split(",") if x],
        args.model,
        args.split or None,
        args.max_tokens,
        args.max_length,
        shard_texts=args.shard_texts,
        progress=False,
        texts_from=args.texts_from,
        max_texts=args.max_texts,
    )
    print(json.dumps({**summary._asdict(), "path": str(summary.path)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

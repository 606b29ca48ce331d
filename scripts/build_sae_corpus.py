"""Build the text corpus the default SAE is trained on, from text already on this machine.

Sources: Debian package descriptions (apt lists, after `apt-get update -o Acquire::Languages=en`)
and the prompts of all sae-probes tasks (`pip install --no-deps sae-probes`). Texts are
deduplicated (whitespace-normalised), long ones cut, each probes task capped so that no single
task dominates, rows shuffled with a fixed seed and ~5% held out for evaluating the SAE.

Output: Parquet with columns text, source ("debian:<section>" / "probes:<task>"), split
("train" / "heldout"), written atomically to --out (default $QSCOPE_HOME/corpora/sae_corpus.parquet).

    python scripts/build_sae_corpus.py [--out PATH] [--seed 0]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path

try:
    import qscope  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pyarrow as pa
import pyarrow.parquet as pq

from qscope.data import debian, probes
from qscope.paths import atomic_path, qscope_home


def cap_text(text: str, max_chars: int) -> str:
    """Cut at the last whitespace before `max_chars` so no word is split (hard cut if there is none)."""
    text = text.strip()
    if len(text) <= max_chars:
        return text
    cut = text.rfind(" ", max_chars * 3 // 4, max_chars)
    return text[: cut if cut > 0 else max_chars].rstrip()


def is_heldout(key: str, frac: float) -> bool:
    # Split by a hash of the text, not by position after shuffling: a text keeps its split when the
    # sources, caps or seed change, so held-out text never leaks into a later train set.
    h = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")
    return h % 100_000 < frac * 100_000


def build(args) -> tuple[list[dict], dict]:
    seen: set[str] = set()
    rows: list[dict] = []

    def add(text: str, source: str) -> int:
        text = cap_text(text, args.max_chars)
        key = " ".join(text.split())
        if len(key) < args.min_chars or key in seen:
            return 0
        seen.add(key)
        split = "heldout" if is_heldout(key, args.heldout_frac) else "train"
        rows.append({"text": text, "source": source, "split": split})
        return len(text)

    t0 = time.time()
    for rec in debian.load_debian_packages(args.apt_lists):
        add(rec["text"], f"debian:{rec['section']}")
    print(f"debian: {len(rows)} texts in {time.time() - t0:.1f}s", file=sys.stderr)

    t0, n0 = time.time(), len(rows)
    for task in probes.list_tasks(binary_only=False):
        recs = probes.read_task(task)
        # A per-task RNG: a task's sample does not depend on which other tasks exist.
        random.Random(f"{args.seed}:{task}").shuffle(recs)
        n = chars = 0
        for rec in recs:
            if n >= args.max_rows_per_task or chars >= args.max_chars_per_task:
                break
            added = add(rec["text"], f"probes:{task}")
            n, chars = n + (added > 0), chars + added
    print(f"probes: {len(rows) - n0} texts in {time.time() - t0:.1f}s", file=sys.stderr)

    random.Random(args.seed).shuffle(rows)
    params = {k: v for k, v in vars(args).items() if k != "out"} | {"apt_lists": str(args.apt_lists)}
    return rows, params


def summarize(rows: list[dict]) -> dict:
    by_split, by_family, by_source = Counter(), Counter(), Counter()
    rows_by_split, rows_by_family = Counter(), Counter()
    for r in rows:
        n = len(r["text"])
        family = r["source"].split(":", 1)[0]
        by_split[r["split"]] += n
        rows_by_split[r["split"]] += 1
        by_family[family] += n
        rows_by_family[family] += 1
        by_source[r["source"]] += n
    return {
        "rows": len(rows),
        "rows_by_split": dict(rows_by_split),
        "chars_by_split": dict(by_split),
        "rows_by_family": dict(rows_by_family),
        "chars_by_family": dict(by_family),
        "top_sources_by_chars": dict(by_source.most_common(15)),
        "n_sources": len(by_source),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=None, help="default: $QSCOPE_HOME/corpora/sae_corpus.parquet")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--heldout-frac", type=float, default=0.05)
    p.add_argument("--max-chars", type=int, default=4000, help="cut each text to at most this many characters")
    p.add_argument("--min-chars", type=int, default=8, help="drop shorter texts (after whitespace normalising)")
    p.add_argument("--max-rows-per-task", type=int, default=3000)
    # code / medical tasks have ~4k-char prompts; without a cap they would be most of the corpus
    p.add_argument("--max-chars-per-task", type=int, default=1_000_000, help="cap on one task's characters")
    p.add_argument("--min-train-chars", type=int, default=12_000_000, help="fail if the train split is smaller")
    p.add_argument("--apt-lists", type=Path, default=debian.APT_LISTS)
    args = p.parse_args(argv)
    out = args.out or qscope_home() / "corpora" / "sae_corpus.parquet"

    t0 = time.time()
    rows, params = build(args)
    stats = summarize(rows)
    train_chars = stats["chars_by_split"].get("train", 0)
    if train_chars < args.min_train_chars:
        print(
            f"error: only {train_chars:,} train characters (< --min-train-chars {args.min_train_chars:,})",
            file=sys.stderr,
        )
        return 1

    table = pa.table(
        {k: pa.array([r[k] for r in rows], pa.string()) for k in ("text", "source", "split")},
    ).replace_schema_metadata({"qscope.corpus": json.dumps({"params": params, "stats": stats})})
    with atomic_path(out) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    print(json.dumps(stats, indent=2))
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) in {time.time() - t0:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

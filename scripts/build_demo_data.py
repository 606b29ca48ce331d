"""Build the committed long-tail demo data in data/demo/ from the local Debian apt lists.

The task it sets up: 20 seed descriptions of ham-radio software (Debian section "hamradio") and a
~1500-document corpus in which ~60 further hamradio packages hide among a broad mix of sections;
mining should find them. classify_seeds.jsonl holds 8 labeled examples each of hamradio,
electronics and games for the classify pipeline (none of them is in the corpus).

Needs `apt-get update -o Acquire::Languages=en` first (long descriptions). Deterministic for a given
set of apt lists (fixed seed, records sorted by package name).

    python scripts/build_demo_data.py [--out-dir data/demo] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from collections import defaultdict
from pathlib import Path

try:
    import qscope  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qscope.data.debian import APT_LISTS, load_debian_packages
from qscope.paths import atomic_path

TARGET = "hamradio"
CLASSIFY_SECTIONS = ("hamradio", "electronics", "games")


def cap_text(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    cut = text.rfind(" ", max_chars * 3 // 4, max_chars)
    return text[: cut if cut > 0 else max_chars].rstrip()


def dedup_key(rec: dict) -> str:
    # Sibling packages (foo / foo-data / libfoo-dev) repeat the first paragraph and differ only in a
    # "This package contains ..." tail; keeping one per first paragraph stops a seed's sibling from
    # sitting in the corpus as a free, near-verbatim hit that would inflate mining recall.
    first = rec["long_description"].split("\n\n", 1)[0]
    return " ".join(first.lower().split())


def sqrt_quotas(sizes: dict[str, int], total: int) -> dict[str, int]:
    """Split `total` over sections in proportion to sqrt(size), never more than a section has: small
    sections still appear, and libs/libdevel/python do not swamp the mix as uniform sampling would."""
    weights = {s: math.sqrt(n) for s, n in sizes.items()}
    quotas = {s: 0 for s in sizes}
    for _ in range(min(total, sum(sizes.values()))):
        # D'Hondt-style: the next slot goes to the open section furthest below its share.
        open_ = [s for s in sizes if quotas[s] < sizes[s]]
        quotas[min(open_, key=lambda s: ((quotas[s] + 1) / weights[s], s))] += 1
    return quotas


def build(records: list[dict], args) -> dict[str, list[dict]]:
    rng = random.Random(args.seed)
    seen, pool = set(), []
    for rec in records:  # sorted by package name -> deterministic choice among siblings
        key = dedup_key(rec)
        if key and key not in seen:
            seen.add(key)
            pool.append(rec)
    # Ham-radio software filed under libdevel/doc/perl... (tag hardware::hamradio) would count as false
    # positives although it is about ham radio; leave it out so the section label is a clean ground truth.
    pool = [r for r in pool if r["section"] == TARGET or "hardware::hamradio" not in r["tags"]]

    by_section = defaultdict(list)
    for rec in pool:
        by_section[rec["section"]].append(rec)
    for recs in by_section.values():
        rng.shuffle(recs)

    ham = by_section.pop(TARGET)
    seeds, hidden = ham[: args.n_seeds], ham[args.n_seeds : args.n_seeds + args.n_hidden]
    classify = {TARGET: seeds[: args.n_classify]}
    for section in CLASSIFY_SECTIONS[1:]:
        # Labeled examples should be the programs themselves, not their -doc / -data / plugin packages.
        recs = by_section[section]
        picked = [r for r in recs if "role::program" in r["tags"]][: args.n_classify]
        picked += [r for r in recs if r not in picked][: args.n_classify - len(picked)]
        classify[section] = picked
        by_section[section] = [r for r in recs if r not in picked]

    quotas = sqrt_quotas({s: len(v) for s, v in by_section.items()}, args.n_corpus - len(hidden))
    corpus = hidden + [rec for s in sorted(by_section) for rec in by_section[s][: quotas[s]]]
    rng.shuffle(corpus)

    def text(rec):
        return cap_text(rec["text"], args.max_chars)

    return {
        "seeds.jsonl": [{"id": r["package"], "text": text(r), "label": TARGET} for r in seeds],
        "corpus.jsonl": [{"id": r["package"], "text": text(r), "section": r["section"]} for r in corpus],
        "classify_seeds.jsonl": [
            {"id": r["package"], "text": text(r), "label": s} for s in CLASSIFY_SECTIONS for r in classify[s]
        ],
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parents[1] / "data" / "demo")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-seeds", type=int, default=20)
    p.add_argument("--n-hidden", type=int, default=60, help="hamradio packages hidden in the corpus")
    p.add_argument("--n-corpus", type=int, default=1500)
    p.add_argument("--n-classify", type=int, default=8, help="examples per section in classify_seeds.jsonl")
    p.add_argument("--max-chars", type=int, default=1500)
    p.add_argument("--apt-lists", type=Path, default=APT_LISTS)
    args = p.parse_args(argv)

    files = build(load_debian_packages(args.apt_lists), args)
    for name, rows in files.items():
        with atomic_path(args.out_dir / name) as tmp:
            tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    corpus = files["corpus.jsonl"]
    n_sections = len({r["section"] for r in corpus})
    n_ham = sum(r["section"] == TARGET for r in corpus)
    size = sum((args.out_dir / n).stat().st_size for n in files)
    print(
        f"seeds: {len(files['seeds.jsonl'])}, corpus: {len(corpus)} ({n_ham} {TARGET}, {n_sections} sections), "
        f"classify_seeds: {len(files['classify_seeds.jsonl'])}; {size / 1e6:.2f} MB in {args.out_dir}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

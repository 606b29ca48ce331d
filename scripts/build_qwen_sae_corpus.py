"""Build the text corpus the Qwen SAE (`qwen2.5-coder-0.5b-l12`) is trained on, from text already on this machine.

Three real sources, all offline:
  * the default SAE's corpus (`scripts/build_sae_corpus.py`: English Debian package descriptions + sae-probes texts,
    already shuffled), cut to a character budget: on 2 CPU cores Qwen2.5-0.5B reads ~300-500 tokens/s, so the
    whole 15M-token corpus is out of reach and a budget keeps the two other sources from being diluted;
  * every Chinese Debian package description (`Translation-zh_CN` / `zh_TW`, after
    `apt-get update -o Acquire::Languages=en,zh_CN,zh_TW`), so that the SAE has Chinese-language features to steer;
  * Python source code from this interpreter's standard library, cut at top-level definitions, because the model is
    a code model and code features are part of what the SAE must expose.

Rows get the same hash-based train / held-out split as the default corpus (a text keeps its split whatever the
budget), are shuffled with a fixed seed, and are written atomically as Parquet (text, source, split) with the
build parameters and per-source statistics in the schema metadata.

    python scripts/build_qwen_sae_corpus.py [--out PATH] [--base-chars 7000000] [--code-chars 700000]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import sysconfig
import time
from collections import Counter
from pathlib import Path

try:
    import qscope  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import build_sae_corpus as base_corpus  # noqa: E402  (the sibling script: same caps, split rule and summary)
import pyarrow as pa
import pyarrow.parquet as pq

from qscope.data import debian  # noqa: E402
from qscope.paths import atomic_path, qscope_home  # noqa: E402

ZH_LANGS = ("zh_CN", "zh_TW")
ZH_HINT = "run `apt-get update -o Acquire::Languages=en,zh_CN,zh_TW` (as root) to fetch them"
# Tests and vendored third-party code would make the code sample mostly asserts and someone else's style.
SKIP_STDLIB_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "lib2to3", "__pycache__"}


def chinese_descriptions(lists_dirs: list[Path]) -> list[tuple[str, str]]:
    """(text, source) for every Chinese package description found; duplicates across lists keep the first."""
    found: list[Path] = []
    for d in lists_dirs:
        for lang in ZH_LANGS:
            # apt escapes '_' in the file name: ..._i18n_Translation-zh%5fCN.lz4
            found += sorted(d.glob(f"*Translation-{lang.replace('_', '%5f')}*"))
            found += sorted(d.glob(f"*Translation-{lang}*"))
    out, seen = [], set()
    for path in found:
        lang = next(x for x in ZH_LANGS if x in path.name.replace("%5f", "_"))
        for para in debian.parse_deb822(debian._open_text(path)):  # noqa: SLF001 - the shared lz4/xz reader
            value = para.get(f"Description-{lang}")
            if not value or "Package" not in para or (para["Package"], lang) in seen:
                continue
            seen.add((para["Package"], lang))
            short, _, rest = value.partition("\n")
            long = debian.format_long_description(rest) if rest else ""
            out.append((f"{short.strip()}\n\n{long}" if long else short.strip(), f"debian-{lang}"))
    return out


def python_source_chunks(root: Path, max_chars: int) -> list[tuple[str, str]]:
    """Cut every stdlib module into pieces of at most `max_chars`, breaking before top-level `def`/`class` lines
    (a piece then reads like a real file excerpt: imports, a class, a few functions)."""
    out = []
    for path in sorted(root.rglob("*.py")):
        if SKIP_STDLIB_DIRS & set(path.relative_to(root).parts[:-1]) or path.name.startswith("test_"):
            continue
        try:
            source = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        module = ".".join(path.relative_to(root).with_suffix("").parts)
        piece: list[str] = []
        size = 0
        for line in source.splitlines(keepends=True):
            starts_block = line.startswith(("def ", "class ", "async def ", "@"))
            if piece and (size + len(line) > max_chars or (starts_block and size > max_chars // 2)):
                out.append(("".join(piece), f"python-stdlib:{module}"))
                piece, size = [], 0
            if len(line) <= max_chars:
                piece.append(line)
                size += len(line)
        if piece:
            out.append(("".join(piece), f"python-stdlib:{module}"))
    return out


def build(args) -> tuple[list[dict], dict]:
    if not args.base.exists():
        raise SystemExit(f"error: {args.base} not found; build it first: python scripts/build_sae_corpus.py")
    base_rows = pq.read_table(args.base, columns=["text", "source", "split"]).to_pylist()
    seen: set[str] = set()
    rows: list[dict] = []

    def add(text: str, source: str, split: str | None = None) -> int:
        text = base_corpus.cap_text(text, args.max_chars)
        key = " ".join(text.split())
        if len(key) < args.min_chars or key in seen:
            return 0
        seen.add(key)
        split = split or ("heldout" if base_corpus.is_heldout(key, args.heldout_frac) else "train")
        rows.append({"text": text, "source": source, "split": split})
        return len(text)

    zh = chinese_descriptions(args.apt_lists)
    if len(zh) < args.min_zh_texts:
        raise SystemExit(
            f"error: {len(zh)} Chinese descriptions in {[str(p) for p in args.apt_lists]} "
            f"(< --min-zh-texts {args.min_zh_texts}); {ZH_HINT}"
        )
    for text, source in zh:
        add(text, source)
    print(f"chinese: {len(rows)} texts", file=sys.stderr)

    n0 = len(rows)
    code = python_source_chunks(args.stdlib, args.code_piece_chars)
    random.Random(f"{args.seed}:code").shuffle(code)
    chars = 0
    for text, source in code:
        if chars >= args.code_chars:
            break
        chars += add(text, source)
    print(f"python stdlib: {len(rows) - n0} chunks ({chars:,} chars) from {args.stdlib}", file=sys.stderr)

    # The base corpus is already shuffled; its prefix is a uniform sample. Its split is kept as it is (the same
    # hash rule), so the Qwen SAE's held-out text is held out for the default SAE too.
    budget = {"train": args.base_chars, "heldout": int(args.base_chars * args.heldout_frac / (1 - args.heldout_frac))}
    taken = {"train": 0, "heldout": 0}
    n0 = len(rows)
    for r in base_rows:
        if r["split"] in taken and taken[r["split"]] < budget[r["split"]]:
            taken[r["split"]] += add(r["text"], r["source"], r["split"])
    chars = taken["train"]
    print(f"base corpus: {len(rows) - n0} texts ({chars:,} train chars) from {args.base}", file=sys.stderr)

    random.Random(args.seed).shuffle(rows)
    params = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "out"}
    params["apt_lists"] = [str(p) for p in args.apt_lists]
    params["python"] = sys.version.split()[0]
    return rows, params


def eval_sample(rows: list[dict], max_chars: int, floor: float, seed: int) -> list[dict]:
    """A small held-out evaluation set: held-out rows only, each source family in proportion to its share of the
    held-out characters, except that Chinese and code get at least `floor` of the budget each (so the set shipped
    next to the SAE also measures the two things this corpus adds)."""
    held = [r for r in rows if r["split"] == "heldout"]
    random.Random(f"{seed}:eval").shuffle(held)
    families: dict[str, list[dict]] = {}
    for r in held:
        families.setdefault(_family(r["source"]), []).append(r)
    total = sum(len(r["text"]) for r in held)
    share = {f: sum(len(r["text"]) for r in rs) / total for f, rs in families.items()}
    for f in ("chinese", "code"):
        if f in share:
            share[f] = max(share[f], floor)
    norm = sum(share.values())
    out = []
    for f, rs in sorted(families.items()):
        budget, used = max_chars * share[f] / norm, 0
        for r in rs:
            if used >= budget:
                break
            out.append({"id": f"heldout-{len(out):04d}", "text": r["text"], "source": r["source"]})
            used += len(r["text"])
    return out


def _family(source: str) -> str:
    if source.startswith("debian-zh"):
        return "chinese"
    if source.startswith("python-stdlib") or source.startswith("probes:") and "_code_" in source:
        return "code"
    return source.split(":", 1)[0]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    home = qscope_home()
    p.add_argument("--out", type=Path, default=home / "corpora" / "qwen_sae_corpus.parquet")
    p.add_argument(
        "--base",
        type=Path,
        default=home / "corpora" / "sae_corpus.parquet",
        help="the default SAE's corpus (scripts/build_sae_corpus.py)",
    )
    p.add_argument("--base-chars", type=int, default=7_000_000, help="train characters taken from --base")
    p.add_argument("--code-chars", type=int, default=700_000, help="characters of Python stdlib source")
    p.add_argument(
        "--code-piece-chars",
        type=int,
        default=1000,
        help="cut source into pieces of at most this size (~256 tokens: the SAE reads 256 per text)",
    )
    p.add_argument("--stdlib", type=Path, default=Path(sysconfig.get_paths()["stdlib"]))
    p.add_argument(
        "--apt-lists",
        type=Path,
        nargs="+",
        default=[debian.APT_LISTS, home / "apt-zh"],
        help="directories searched for Translation-zh_CN / zh_TW lists (copies are fine)",
    )
    p.add_argument("--min-zh-texts", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--heldout-frac", type=float, default=0.05)
    p.add_argument("--max-chars", type=int, default=4000)
    p.add_argument(
        "--eval-out",
        type=Path,
        default=None,
        help="also write a small held-out evaluation set here (.jsonl: id, text, source)",
    )
    p.add_argument("--eval-chars", type=int, default=90_000, help="size of that set in characters")
    p.add_argument("--eval-floor", type=float, default=0.1, help="minimum share of Chinese and of code in it")
    p.add_argument("--min-chars", type=int, default=8)
    args = p.parse_args(argv)

    t0 = time.time()
    rows, params = build(args)
    stats = base_corpus.summarize(rows)
    table = pa.table(
        {k: pa.array([r[k] for r in rows], pa.string()) for k in ("text", "source", "split")},
    ).replace_schema_metadata({"qscope.corpus": json.dumps({"params": params, "stats": stats})})
    with atomic_path(args.out) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    if args.eval_out is not None:
        sample = eval_sample(rows, args.eval_chars, args.eval_floor, args.seed)
        with atomic_path(args.eval_out) as tmp:
            tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in sample), encoding="utf-8")
        by = Counter(_family(r["source"]) for r in sample)
        print(f"wrote {args.eval_out}: {len(sample)} held-out texts {dict(by)}", file=sys.stderr)
    print(json.dumps(stats, indent=2))
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB) in {time.time() - t0:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

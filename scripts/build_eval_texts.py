"""Build the small held-out evaluation set shipped with qscope (`qscope/assets/eval/heldout_debian.parquet`).

`qscope eval-sae` reads it when no --texts is given, so SAE evaluation works on a fresh machine with an empty
QSCOPE_HOME. It holds Debian package descriptions (DFSG-free text, from the local apt lists) that fall in the
held-out split of `scripts/build_sae_corpus.py` — the same text-hash rule — so the shipped SAE never trained on them.
Texts are taken in the order of a hash of their content (stable when apt lists change) until the set holds
--tokens evaluation tokens of the embedded model (after the sink position, as evaluation counts them).

    python scripts/build_eval_texts.py [--tokens 65536] [--out qscope/assets/eval/heldout_debian.parquet]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
try:
    import qscope  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO))

import pyarrow as pa
import pyarrow.parquet as pq
from build_sae_corpus import cap_text, is_heldout

from qscope.data import debian
from qscope.evaluation.texts import SHIPPED_EVAL_NAME
from qscope.paths import atomic_path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=REPO / "qscope" / "assets" / "eval" / "heldout_debian.parquet")
    p.add_argument("--tokens", type=int, default=65_536, help="evaluation tokens to collect")
    p.add_argument("--heldout-frac", type=float, default=0.05, help="as build_sae_corpus.py (must match)")
    p.add_argument("--max-chars", type=int, default=4000, help="as build_sae_corpus.py (must match)")
    p.add_argument("--max-length", type=int, default=512, help="tokens per text counted at most (eval default)")
    p.add_argument("--apt-lists", type=Path, default=debian.APT_LISTS)
    args = p.parse_args(argv)

    from transformers import AutoTokenizer

    from qscope.models.resolve import embedded_model_dir

    seen, rows = set(), []
    for rec in debian.load_debian_packages(args.apt_lists):
        text = cap_text(rec["text"], args.max_chars)
        key = " ".join(text.split())
        if key in seen or not is_heldout(key, args.heldout_frac):
            continue
        seen.add(key)
        rows.append({"text": text, "source": f"debian:{rec['section']}", "package": rec.get("package", "")})
    rows.sort(key=lambda r: hashlib.blake2b(r["text"].encode(), digest_size=8).digest())

    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir("smollm2-135m"))
    chosen, total = [], 0
    for start in range(0, len(rows), 256):
        chunk = rows[start : start + 256]
        for row, ids in zip(chunk, tokenizer([r["text"] for r in chunk], add_special_tokens=False)["input_ids"]):
            chosen.append(row)
            total += min(len(ids) + 1, args.max_length) - 1  # tokens after the sink, as evaluation counts
            if total >= args.tokens:
                break
        if total >= args.tokens:
            break
    if total < args.tokens:
        print(f"error: only {total} held-out tokens in {len(rows)} texts", file=sys.stderr)
        return 1
    meta = {
        "name": SHIPPED_EVAL_NAME,
        "texts": len(chosen),
        "tokens": total,
        "tokenizer": "smollm2-135m",
        "rule": "Debian descriptions in the held-out split of scripts/build_sae_corpus.py, ordered by blake2b",
        "heldout_frac": args.heldout_frac,
    }
    table = pa.table({k: pa.array([r[k] for r in chosen], pa.string()) for k in ("text", "source", "package")})
    table = table.replace_schema_metadata({"qscope.eval_texts": json.dumps(meta)})
    with atomic_path(args.out) as tmp:
        pq.write_table(table, tmp, compression="zstd", compression_level=19)
    print(json.dumps(meta))
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e3:.0f} kB)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

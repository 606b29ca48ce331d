"""Does the classify pipeline stream? Peak memory and steady-state throughput at 10k, 100k and 1M corpus rows, side
by side in one run, plus the framework's overhead against a bare loop of the same operators.

    .venv/bin/python bench/scale.py                              # 10k, 100k, 1M rows + embedded-model overhead
    .venv/bin/python bench/scale.py --sizes 10000,100000 --embedded-rows 0

A tiny random LM (2 blocks, width 64, SmolLM2's tokenizer) and a random TopK SAE keep the model cheap, so what is
measured is the pipeline: reading, the Ray Data stream, the signature store, the seed model, classification, the
result. Each size runs `qscope classify` in a fresh process on a fresh embedded Ray; a sampler sums the PSS of
that process and every process under it (the driver, Ray's GCS / raylet, every worker and actor — shared
object-store pages counted once) every second (reading smaps is not free: a faster sampler slows the run it
measures). Steady-state rows/s = corpus rows / (time from the first to the last batch of the encode pass + the same
for the classify pass), from the run's own counters: Ray start-up, model loads, the seed-model fit between the
passes and the final merge are excluded.

Goals (issue 10): peak PSS at 1M <= 1.2x at 10k; steady rows/s at 1M >= 0.8x at 10k; embedded model on 5k rows:
pipeline encode rows/s >= 0.85x a bare in-process loop of EncodeSignatures on the same cores.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORDS = [
    f"{a}{b}"
    for a in ("ra", "mo", "ki", "tu", "se", "lo", "an", "ve", "pi", "do")
    for b in ("dio", "tor", "lan", "mex", "sun", "ber", "cal", "fin", "gor", "hul", "zet", "pra")
]


# Ray starts its workers at nice 15: on a machine doing anything else they get a fraction of the CPU that the
# driver, the bare loop or any other process at nice 0 gets, so the pipeline's rows/s would measure the machine's
# other load rather than the pipeline. The bench runs them at the same priority as everything it compares with.
SAME_PRIORITY = {"RAY_worker_niceness": os.environ.get("RAY_worker_niceness", "0")}


def make_tiny_model(work: Path) -> tuple[Path, Path]:
    """A 2-block Llama of width 64 with SmolLM2's tokenizer, and a random TopK SAE on its block 1."""
    from qscope.models.tiny import make_tiny_lm, make_tiny_sae

    model = make_tiny_lm(work / "tiny-lm")
    return model, make_tiny_sae(work / "tiny-sae", model)


def make_corpus(path: Path, rows: int, seed: int = 0) -> Path:
    if path.exists():
        return path
    rng = random.Random(seed)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        for i in range(rows):
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 24)))
            f.write(json.dumps({"id": f"r{i}", "text": text}) + "\n")
    tmp.rename(path)
    return path


class TreeSampler:
    """Peak summed PSS (and the driver's own peak RSS) of a process and all its descendants."""

    def __init__(self, pid: int, interval: float = 1.0):
        import psutil

        self.root, self.interval = psutil.Process(pid), interval
        self.peak_pss = self.peak_driver_rss = 0
        self.at_peak: list[tuple[int, str]] = []  # (PSS, process) at the peak: where the memory is
        self.verbose = bool(os.environ.get("QSCOPE_BENCH_VERBOSE"))
        self._t0 = self._next_report = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self):
        import psutil

        while not self._stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
                self.peak_driver_rss = max(self.peak_driver_rss, self.root.memory_info().rss)
            except psutil.Error:
                break
            total, each = 0, []
            for p in procs:
                try:
                    pss = p.memory_full_info().pss
                    total += pss
                    each.append((pss, " ".join(p.cmdline()[:3])[:60]))
                except psutil.Error:
                    pass
            if total > self.peak_pss:
                self.peak_pss, self.at_peak = total, sorted(each, reverse=True)
            if self.verbose and time.monotonic() >= self._next_report:  # where the memory is, once a minute
                self._next_report = time.monotonic() + 60
                top = ", ".join(f"{n} {p / 2**20:.0f}MB" for p, n in sorted(each, reverse=True)[:5])
                print(
                    f"    [{time.monotonic() - self._t0:5.0f}s] PSS {total / 2**20:.0f} MB: {top}",
                    file=sys.stderr,
                    flush=True,
                )
            self._stop.wait(self.interval)

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=5)


def classify_command(seeds: Path, corpus: Path, out: Path, config: Path, *model_args: str) -> list[str]:
    """`qscope classify` on a private Ray with --json output (what both parts of the bench run)."""
    opts = {"--seeds": seeds, "--corpus": corpus, "--out": out, "--config": config}
    flags = [x for name, value in opts.items() for x in (name, str(value))]
    return [sys.executable, "-m", "qscope.cli", "classify", *flags, *model_args, "--address", "local", "--json"]


def run_classify(work: Path, corpus: Path, seeds: Path, model: Path, sae: Path, config: Path, tag: str) -> dict:
    out = work / f"out-{tag}" / "labels.parquet"
    shutil.rmtree(out.parent, ignore_errors=True)  # a kept --workdir would reuse the signature store: no encode pass
    cmd = classify_command(seeds, corpus, out, config, "--model", str(model), "--sae", str(sae))
    env = {**os.environ, "QSCOPE_PROGRESS_INTERVAL": "30", **SAME_PRIORITY}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    sampler = TreeSampler(proc.pid)
    stdout, stderr = proc.communicate()
    sampler.stop()
    if proc.returncode != 0:
        raise SystemExit(f"classify failed ({tag}):\n{stdout}\n{stderr[-3000:]}")
    res = json.loads(stdout)
    th = res["throughput"]
    # Steady state: the time rows were flowing through the corpus stages (encode, then classify), from each
    # stage's first counted batch to its last; actor start-up, model loads and the seed-model fit between the two
    # passes are excluded (they do not grow with the corpus).
    # Per stage, the time all its rows take at its steady rate (rows / rows_per_s: the first batch's rows are not
    # in that rate, since they were done before the clock started).
    span = sum(th[s]["rows"] / th[s]["rows_per_s"] for s in ("encode_corpus", "classify"))
    if os.environ.get("QSCOPE_BENCH_VERBOSE"):
        top = ", ".join(f"{n} {p / 2**20:.0f}MB" for p, n in sampler.at_peak[:8])
        print(f"    at peak ({len(sampler.at_peak)} processes): {top}", file=sys.stderr)
    return {
        "rows": res["rows"],
        "peak_pss_mb": sampler.peak_pss / 2**20,
        "driver_rss_mb": sampler.peak_driver_rss / 2**20,
        "wall_s": time.perf_counter() - t0,
        "steady_rows_s": res["rows"] / span,
        "encode_rows_s": th["encode_corpus"]["rows_per_s"],
        "classify_rows_s": th["classify"]["rows_per_s"],
    }


def bare_loop(corpus: Path, batch_size: int) -> float:
    """EncodeSignatures over the same rows in this process, every core: the framework-free reference."""
    import torch

    from qscope.operators import EncodeSignatures
    from qscope.pipelines.flow import _rebatch
    from qscope.pipelines.sources import iter_corpus, resolve_corpus

    torch.set_num_threads(os.cpu_count() or 1)
    op = EncodeSignatures(model_spec={"max_length": 48}, pooling="sum", top_n=256, batch_size=batch_size)
    batches = list(_rebatch(iter_corpus(resolve_corpus(str(corpus))), batch_size))
    op(batches[0].slice(0, 2))  # load the model outside the timing, as the pipeline's steady state does
    t0 = time.perf_counter()
    n = sum(op(b).num_rows for b in batches)
    return n / (time.perf_counter() - t0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--embedded-rows", type=int, default=5000, help="0 skips the embedded-model overhead check")
    ap.add_argument("--workdir", default=None, help="keep corpora / tiny model here between runs")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved pipeline / bare-loop rounds (embedded model)")
    ap.add_argument(
        "--baseline-runs",
        type=int,
        default=3,
        help="runs of the smallest size; its median is the baseline (idle Ray workers vary it ~10%%)",
    )
    args = ap.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="qscope-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    model, sae = make_tiny_model(work)
    seeds = make_corpus(work / "seeds.jsonl", 20, seed=99)
    tiny_cfg = work / "tiny.yaml"
    tiny_cfg.write_text(
        "model: {max_length: 16}\nresources:\n  encode: {batch_size: 256, num_cpus: 0.5}\n"
        "  light: {batch_size: 2048, num_cpus: 0.25, local_below: 0}\n"
    )
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    for i, n in enumerate(sizes):
        corpus = make_corpus(work / f"corpus-{n}.jsonl", n)
        runs = []
        for _ in range(max(1, args.baseline_runs) if i == 0 else 1):
            r = run_classify(work, corpus, seeds, model, sae, tiny_cfg, f"tiny-{n}")
            runs.append(r)
            print(
                f"  {n:>9,} rows: peak PSS {r['peak_pss_mb']:7.0f} MB (driver RSS {r['driver_rss_mb']:5.0f} MB), "
                f"steady {r['steady_rows_s']:8,.0f} rows/s (encode {r['encode_rows_s']:,.0f}, classify "
                f"{r['classify_rows_s']:,.0f}), wall {r['wall_s']:.0f} s",
                flush=True,
            )
        rows.append((n, {k: statistics.median(r[k] for r in runs) for k in runs[0]}))
    base = rows[0][1]
    if args.baseline_runs > 1:
        print(f"\n(the {sizes[0]:,}-row line is the median of {max(1, args.baseline_runs)} runs)")
    print("\nclassify, tiny random LM + SAE (side by side, one run):")
    print(
        f"{'rows':>10} {'peak PSS MB':>12} {'vs first':>9} {'driver RSS MB':>14} {'steady rows/s':>14} {'vs first':>9}"
    )
    for n, r in rows:
        print(
            f"{n:>10,} {r['peak_pss_mb']:>12.0f} {r['peak_pss_mb'] / base['peak_pss_mb']:>9.2f} "
            f"{r['driver_rss_mb']:>14.0f} {r['steady_rows_s']:>14,.0f} "
            f"{r['steady_rows_s'] / base['steady_rows_s']:>9.2f}"
        )
    if args.embedded_rows:
        corpus = make_corpus(work / f"embedded-{args.embedded_rows}.jsonl", args.embedded_rows, seed=7)
        cfg = work / "embedded.yaml"
        cfg.write_text("model: {max_length: 48}\nresources:\n  encode: {batch_size: 32, num_cpus: 0.5}\n")
        pipe, bare = [], []
        for r in range(args.rounds):  # interleaved rounds: load drift hits both sides alike
            out = work / f"out-embedded-{r}" / "labels.parquet"
            shutil.rmtree(out.parent, ignore_errors=True)
            cmd = classify_command(seeds, corpus, out, cfg, "--model", "smollm2-135m")
            res = json.loads(
                subprocess.run(
                    cmd, capture_output=True, text=True, check=True, cwd=ROOT, env={**os.environ, **SAME_PRIORITY}
                ).stdout
            )
            pipe.append(res["throughput"]["encode_corpus"]["rows_per_s"])
            bare.append(bare_loop(corpus, 32))
            print(
                f"  round {r + 1}: pipeline {pipe[-1]:.1f} rows/s, bare loop {bare[-1]:.1f} rows/s, "
                f"ratio {pipe[-1] / bare[-1]:.2f}",
                flush=True,
            )
        # Each round's two sides ran back to back, so their ratio shares that round's load; the median of the
        # ratios is robust to load that changes between rounds, the ratio of the medians is not.
        p, b = statistics.median(pipe), statistics.median(bare)
        ratio = statistics.median(x / y for x, y in zip(pipe, bare))
        print(
            f"\nembedded SmolLM2-135M + shipped SAE, {args.embedded_rows:,} rows, max_length 48, batch 32, "
            f"median of {args.rounds} interleaved rounds:"
        )
        print(
            f"  pipeline (Ray actor, streaming) {p:8.1f} rows/s | bare loop (same operator, in-process) "
            f"{b:8.1f} rows/s | median of the rounds' ratios {ratio:.2f}"
        )
    print(f"\nload average: {os.getloadavg()[0]:.2f}; work dir: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

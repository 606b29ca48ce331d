"""SAE training throughput and quality: qscope's trainer vs SAELens vs sparsify on the same cached activations.

    .venv/bin/python bench/sae_training.py                       # defaults below, 3 repeats each
    .venv/bin/python bench/sae_training.py --tokens 1638400 --repeats 1 --impls qscope,sparsify

Setting (issue 3): d_in 576, d_sae 8192, k 32, batch 4096, Adam, the same token budget, learning rate and
schedule (linear warmup, linear decay over the last 20%) for everyone, on synthetic sparse-dictionary data:
every token is a mean vector plus a sparse non-negative combination of unit-norm "true" atoms (Zipf-distributed
atom frequencies, ~20 atoms per token) plus Gaussian noise, scaled to E||x|| = sqrt(d_in) like qscope's
normalization, so no side gains from its own input scaling. The data is written once as a qscope activation
cache (float16 .npy shards + manifest.json); every side reads those same shards.

Each run is its own subprocess (`--worker IMPL`): qscope runs with this interpreter, the competitors with the
bench-only venv (`--bench-python`, env QSCOPE_BENCH_PYTHON, default /tmp/bench-venv/bin/python, holding
`sae-lens` and `eai-sparsify`; never qscope's .venv). A competitor that does not import is skipped with the reason.
tokens/s = training tokens / wall time of the training loop (batch gathering included, set-up and evaluation not).
EV / L0 are measured afterwards on held-out tokens of the same distribution, by the same code for everyone.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

IMPLS = ("qscope", "saelens", "sparsify")
DEFAULT_BENCH_PYTHON = os.environ.get("QSCOPE_BENCH_PYTHON", "/tmp/bench-venv/bin/python")
IMPORTS = {"saelens": "sae_lens", "sparsify": "sparsify"}


# --- data (main process, qscope venv) --------------------------------------------------------------------
def make_data(
    out: Path, n_train: int, n_heldout: int, d_in: int, n_atoms: int, atoms_per_token: float, seed: int
) -> Path:
    """Synthetic sparse-dictionary activations as a qscope activation cache + heldout.npy (idempotent)."""
    from qscope.training.cache import write_activation_cache

    tag = f"n{n_train}-h{n_heldout}-d{d_in}-a{n_atoms}-p{atoms_per_token:g}-s{seed}"
    path = out / tag
    if (path / "manifest.json").exists() and (path / "heldout.npy").exists():
        return path
    g = torch.Generator().manual_seed(seed)
    atoms = torch.randn(n_atoms, d_in, generator=g)
    atoms /= atoms.norm(dim=1, keepdim=True)
    freq = 1.0 / torch.arange(1, n_atoms + 1).float() ** 0.7  # Zipf-like: a few common atoms, a long tail
    freq = freq[torch.randperm(n_atoms, generator=g)]
    freq /= freq.sum()
    mean = torch.randn(d_in, generator=g) * 0.5

    def sample(n: int) -> np.ndarray:
        rows = []
        for start in range(0, n, 16384):
            m = min(16384, n - start)
            counts = torch.poisson(torch.full((m,), atoms_per_token), generator=g).long().clamp_min(1)
            idx = torch.multinomial(freq, int(counts.sum()), replacement=True, generator=g)
            mags = torch.empty(len(idx)).exponential_(1.0, generator=g) + 0.5
            offsets = torch.cumsum(counts, 0) - counts
            x = torch.nn.functional.embedding_bag(idx, atoms, offsets, mode="sum", per_sample_weights=mags)
            rows.append(x + mean + 0.05 * torch.randn(m, d_in, generator=g))
        return torch.cat(rows).numpy()

    train, heldout = sample(n_train), sample(n_heldout)
    scale = np.sqrt(d_in) / np.linalg.norm(train[:16384], axis=1).mean()
    write_activation_cache(
        path,
        {0: train * scale},
        model="synthetic-sparse-dictionary",
        atoms=n_atoms,
        atoms_per_token=atoms_per_token,
        seed=seed,
    )
    np.save(path / "heldout.npy", (heldout * scale).astype(np.float32))
    return path


# --- shared by workers (numpy + torch only: runs in the bench venv too) ----------------------------------
def load_cache(path: Path) -> np.ndarray:
    manifest = json.loads((path / "manifest.json").read_text())
    layer = manifest["layers"][0]
    return np.concatenate([np.load(path / f"layer{layer}" / s["name"]) for s in manifest["shards"]]).astype(np.float32)


def lr_at(step: int, total: int, lr: float, warmup: int, decay_fraction: float = 0.2) -> float:
    """Same schedule as qscope.training.Trainer.lr_at."""
    if step < warmup:
        return lr * (step + 1) / warmup
    decay_start = int(total * (1 - decay_fraction))
    if decay_fraction > 0 and step >= decay_start:
        return lr * max(total - step, 0) / max(total - decay_start, 1)
    return lr


@torch.no_grad()
def heldout_metrics(reconstruct, x: torch.Tensor, chunk: int = 4096) -> dict:
    """EV = 1 - SSE/SST (per-dimension mean), L0 = mean active latents; `reconstruct(x) -> (x_hat, n_active)`."""
    sse, active = 0.0, 0.0
    for i in range(0, len(x), chunk):
        x_hat, n_active = reconstruct(x[i : i + chunk])
        sse += float((x_hat.float() - x[i : i + chunk]).pow(2).sum())
        active += float(n_active)
    sst = float((x - x.mean(0)).pow(2).sum())
    return {"explained_variance": 1 - sse / sst, "l0": active / len(x)}


class StepTimer:
    """Wall time of every training step (batch gathering + update): the median step is robust to load spikes
    from other processes on a shared machine, the total is what a user waits."""

    def __init__(self):
        self.times: list[float] = []

    def wrap(self, fn):
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            self.times.append(time.perf_counter() - t0)
            return out

        return timed

    def report(self, batch: int) -> dict:
        return {
            "tokens_per_s": batch * len(self.times) / sum(self.times),
            "tokens_per_s_median_step": batch / statistics.median(self.times),
            "steps": len(self.times),
        }


class Batches:
    """Competitors' data: fixed-seed permutation of the in-memory cache, one fresh permutation per epoch."""

    def __init__(self, data: np.ndarray, batch: int, seed: int):
        self.data, self.batch, self.seed, self.epoch, self.pos = torch.from_numpy(data), batch, seed, 0, 0
        self.perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))

    def next(self) -> torch.Tensor:
        if self.pos + self.batch > len(self.perm):
            self.epoch, self.pos = self.epoch + 1, 0
            self.perm = torch.randperm(len(self.data), generator=torch.Generator().manual_seed(self.seed + self.epoch))
        idx = self.perm[self.pos : self.pos + self.batch]
        self.pos += self.batch
        return self.data[idx]


# --- workers ---------------------------------------------------------------------------------------------
def run_qscope(a, heldout: torch.Tensor) -> dict:
    import tempfile

    import qscope
    from qscope.sae import SAEConfig
    from qscope.training import SAETrainConfig, TrainConfig, Trainer
    from qscope.training.export import export_sae

    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(
            layers=[0],
            cache=str(a.data_dir),
            batch_size=a.batch,
            max_tokens=a.tokens,
            seed=a.seed,
            num_threads=a.threads,
            out=out,
            checkpoint_every=0,
            progress=False,
            sae=SAETrainConfig(d_sae=a.d_sae, k=a.k, lr=a.lr, warmup_steps=a.warmup, init_b_dec=a.qscope_b_dec),
        )
        trainer = Trainer(cfg)
        # One step = the source gathering its batch + the update, timed like the competitors' loop bodies.
        timer, started = StepTimer(), []
        next_batch, train_step = trainer.source.next_batch, trainer.train_step

        def timed_next_batch():
            started.append(time.perf_counter())
            return next_batch()

        def timed_train_step(batch):
            out = train_step(batch)
            timer.times.append(time.perf_counter() - started.pop())
            return out

        trainer.source.next_batch, trainer.train_step = timed_next_batch, timed_train_step
        result = trainer.fit(export=False)
        sae = export_sae(
            trainer.saes[0],
            trainer.scales[0],
            SAEConfig("topk", heldout.shape[1], a.d_sae, a.k, apply_b_dec_to_input=True),
        )

    def reconstruct(x):
        codes = sae.encode(x)
        return sae.decode(codes), (codes.values > 0).sum()

    return {
        **timer.report(a.batch),
        "trainer_tokens_per_s": result.tokens_per_s,
        "train_tokens": result.tokens,
        "version": getattr(qscope, "__version__", "?"),
        **heldout_metrics(reconstruct, heldout),
    }


def run_saelens(a, heldout: torch.Tensor) -> dict:
    import sae_lens
    from sae_lens.saes.sae import TrainStepInput
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig

    torch.manual_seed(a.seed)
    sae = TopKTrainingSAE(
        TopKTrainingSAEConfig(d_in=heldout.shape[1], d_sae=a.d_sae, k=a.k, dtype="float32", device="cpu")
    )
    data = Batches(load_cache(a.data_dir), a.batch, a.seed)
    steps = a.tokens // a.batch
    opt = torch.optim.Adam(sae.parameters(), lr=a.lr, betas=(0.9, 0.999))
    since_fired = torch.zeros(a.d_sae, dtype=torch.long)
    coefficients = {k: (v.value if hasattr(v, "value") else float(v)) for k, v in sae.get_coefficients().items()}
    timer = StepTimer()
    for step in range(steps):
        t_step = time.perf_counter()
        x = data.next()
        if step == 0:  # b_dec at the data mean, as sparsify's trainer and qscope (geometric median) do
            with torch.no_grad():
                sae.b_dec.copy_(x.mean(0))
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, a.lr, a.warmup)
        out = sae.training_forward_pass(
            TrainStepInput(
                sae_in=x,
                coefficients=coefficients,
                dead_neuron_mask=since_fired >= a.dead_tokens,
                n_training_steps=step,
                is_logging_step=False,
            )
        )
        with torch.no_grad():  # as sae_lens.training.sae_trainer.SAETrainer._train_step
            fired = out.feature_acts.bool().sum(-2).bool()
            since_fired += len(x)
            since_fired[fired] = 0
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(sae.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        timer.times.append(time.perf_counter() - t_step)
    sae.eval()

    def reconstruct(x):
        acts = sae.encode(x)
        return sae.decode(acts), (acts > 0).sum()

    return {
        **timer.report(a.batch),
        "train_tokens": steps * a.batch,
        "version": sae_lens.__version__,
        **heldout_metrics(reconstruct, heldout),
    }


def run_sparsify(a, heldout: torch.Tensor) -> dict:
    from importlib.metadata import version

    from sparsify import SparseCoder, SparseCoderConfig

    torch.manual_seed(a.seed)
    sae = SparseCoder(heldout.shape[1], SparseCoderConfig(num_latents=a.d_sae, k=a.k), device="cpu")
    data = Batches(load_cache(a.data_dir), a.batch, a.seed)
    steps = a.tokens // a.batch
    opt = torch.optim.Adam(sae.parameters(), lr=a.lr, betas=(0.9, 0.999))
    since_fired = torch.zeros(a.d_sae, dtype=torch.long)
    timer = StepTimer()
    for step in range(steps):
        t_step = time.perf_counter()
        x = data.next()
        if step == 0:  # sparsify.trainer sets b_dec to the first batch's mean
            with torch.no_grad():
                sae.b_dec.copy_(x.mean(0))
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, a.lr, a.warmup)
        dead = since_fired >= a.dead_tokens
        out = sae(x, dead_mask=dead)
        loss = out.fvu + a.auxk_alpha * out.auxk_loss  # as sparsify.trainer (auxk_alpha 1/32)
        loss.backward()
        sae.remove_gradient_parallel_to_decoder_directions()
        opt.step()
        opt.zero_grad()
        sae.set_decoder_norm_to_unit_norm()
        with torch.no_grad():
            since_fired += len(x)
            since_fired[out.latent_indices.flatten().unique()] = 0
        timer.times.append(time.perf_counter() - t_step)

    def reconstruct(x):
        enc = sae.encode(x)
        return sae.decode(enc.top_acts, enc.top_indices), (enc.top_acts > 0).sum()

    return {
        **timer.report(a.batch),
        "train_tokens": steps * a.batch,
        "version": version("eai-sparsify"),
        **heldout_metrics(reconstruct, heldout),
    }


def worker(a) -> None:
    torch.set_num_threads(a.threads)
    heldout = torch.from_numpy(np.load(a.data_dir / "heldout.npy"))
    result = {"qscope": run_qscope, "saelens": run_saelens, "sparsify": run_sparsify}[a.worker](a, heldout)
    print("RESULT " + json.dumps({"impl": a.worker, **result}), flush=True)


# --- driver ----------------------------------------------------------------------------------------------
def available(impl: str, python: str) -> str | None:
    """None if `impl` can run with `python`, else the reason it cannot."""
    if impl == "qscope":
        return None
    if not Path(python).exists():
        return f"bench interpreter {python} not found (create /tmp/bench-venv, see bench/README.md)"
    probe = subprocess.run([python, "-c", f"import {IMPORTS[impl]}"], capture_output=True, text=True)
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["import failed"])[-1]
        return f"`import {IMPORTS[impl]}` fails in {python}: {last}"
    return None


def run_one(impl: str, a, python: str) -> dict:
    cmd = [python, str(Path(__file__).resolve()), "--worker", impl, "--data-dir", str(a.data_dir)]
    for name in (
        "tokens",
        "batch",
        "d_sae",
        "k",
        "lr",
        "warmup",
        "threads",
        "seed",
        "dead_tokens",
        "auxk_alpha",
        "qscope_b_dec",
    ):
        cmd += [f"--{name.replace('_', '-')}", str(getattr(a, name))]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(a.threads),
        "MKL_NUM_THREADS": str(a.threads),
        "TOKENIZERS_PARALLELISM": "false",
        "WANDB_MODE": "disabled",
    }
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise RuntimeError(f"{impl} worker failed (rc {proc.returncode}):\n{tail}")
    return json.loads(lines[-1][len("RESULT ") :])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--impls", default=",".join(IMPLS), help="comma-separated subset of qscope,saelens,sparsify")
    p.add_argument("--tokens", type=int, default=60 * 4096, help="training tokens per run (same for everyone)")
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--d-sae", type=int, default=8192)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-4 / (8192 / 16384) ** 0.5, help="Adam lr (qscope's default rule)")
    p.add_argument("--warmup", type=int, default=10, help="linear warmup steps")
    p.add_argument("--dead-tokens", type=int, default=1_000_000, help="tokens without firing = dead (AuxK)")
    p.add_argument("--auxk-alpha", type=float, default=1 / 32)
    p.add_argument(
        "--qscope-b-dec",
        default="geometric_median",
        choices=["geometric_median", "mean", "zeros"],
        help="qscope's b_dec init (the competitors start at the first batch's mean)",
    )
    p.add_argument("--repeats", type=int, default=3, help="runs per implementation; medians are reported")
    p.add_argument(
        "--saelens-repeats",
        type=int,
        default=None,
        help="fewer runs for SAELens (it is ~3x slower; its runs still interleave with the first rounds)",
    )
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads for every side")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--heldout", type=int, default=16384, help="held-out tokens for EV / L0")
    p.add_argument("--atoms", type=int, default=8192, help="true dictionary size of the synthetic data")
    p.add_argument("--atoms-per-token", type=float, default=20.0)
    p.add_argument("--data-root", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "qscope-bench-sae")
    p.add_argument("--bench-python", default=DEFAULT_BENCH_PYTHON, help="interpreter with sae-lens / eai-sparsify")
    p.add_argument("--json", action="store_true", help="print the results as JSON at the end")
    p.add_argument("--worker", choices=IMPLS, help=argparse.SUPPRESS)
    p.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        worker(a)
        return 0

    impls = [i.strip() for i in a.impls.split(",") if i.strip()]
    unknown = sorted(set(impls) - set(IMPLS))
    if unknown:
        p.error(f"unknown implementation(s) {unknown}; choose from {IMPLS}")
    t0 = time.time()
    a.data_dir = make_data(a.data_root, a.tokens, a.heldout, 576, a.atoms, a.atoms_per_token, a.seed)
    print(
        f"data: {a.data_dir} ({a.tokens:,} train + {a.heldout:,} held-out tokens, d_in 576; {time.time() - t0:.0f} s)"
    )
    print(
        f"setting: d_sae {a.d_sae}, k {a.k}, batch {a.batch}, Adam lr {a.lr:.3g}, warmup {a.warmup}, "
        f"{a.tokens // a.batch} steps, {a.threads} threads, {a.repeats} repeat(s); load avg {os.getloadavg()[0]:.1f}"
    )
    pythons = {impl: sys.executable if impl == "qscope" else a.bench_python for impl in impls}
    for impl in list(impls):
        reason = available(impl, pythons[impl])
        if reason:
            print(f"skip {impl}: {reason}")
            impls.remove(impl)
    results: dict[str, list[dict]] = {}
    # Interleaved (q, s, p, q, s, p, ...): on a shared machine every side sees the same background load.
    for r in range(a.repeats):
        for impl in impls:
            if impl == "saelens" and a.saelens_repeats is not None and r >= a.saelens_repeats:
                continue
            load_before = os.getloadavg()[0]
            res = run_one(impl, a, pythons[impl])
            res["load_avg"] = round((load_before + os.getloadavg()[0]) / 2, 2)
            results.setdefault(impl, []).append(res)
            print(
                f"  {impl:9s} run {r + 1}: {res['tokens_per_s']:8.0f} tok/s (median step "
                f"{res['tokens_per_s_median_step']:.0f})  EV {res['explained_variance']:.4f}  "
                f"L0 {res['l0']:.1f}  (load avg {res['load_avg']:.1f})",
                flush=True,
            )

    summary = {
        impl: {
            "version": runs[0]["version"],
            "tokens_per_s": statistics.median(x["tokens_per_s"] for x in runs),
            "tokens_per_s_median_step": statistics.median(x["tokens_per_s_median_step"] for x in runs),
            "explained_variance": statistics.median(x["explained_variance"] for x in runs),
            "l0": statistics.median(x["l0"] for x in runs),
            "runs": len(runs),
        }
        for impl, runs in results.items()
    }
    print()
    print(f"{'impl':10s} {'version':>10s} {'tok/s':>9s} {'tok/s median step':>18s} {'EV':>8s} {'L0':>6s}")
    for impl, s in summary.items():
        print(
            f"{impl:10s} {s['version']:>10s} {s['tokens_per_s']:9.0f} {s['tokens_per_s_median_step']:18.0f} "
            f"{s['explained_variance']:8.4f} {s['l0']:6.1f}"
        )
    if "qscope" in summary:
        for other in ("saelens", "sparsify"):
            if other in summary:
                q, o = summary["qscope"], summary[other]
                print(
                    f"qscope/{other}: throughput {q['tokens_per_s'] / o['tokens_per_s']:.2f}x "
                    f"(median step {q['tokens_per_s_median_step'] / o['tokens_per_s_median_step']:.2f}x), "
                    f"EV {q['explained_variance']:.4f} vs {o['explained_variance']:.4f}, "
                    f"L0 {q['l0']:.1f} vs {o['l0']:.1f}"
                )
    if a.json:
        print(
            json.dumps(
                {
                    "setting": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
                    "summary": summary,
                    "runs": results,
                }
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

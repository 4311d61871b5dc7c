#!/usr/bin/env bash
# The prepared GPU run (about 6-7 minutes on one H100, 16 cores): CenterNet throughput by batch and
# precision with the golden check, then the query benchmark reduced to vtest + a 10-minute
# composed video, audited on 1,000 frames, with decoding measured in 1 and 16 processes.
# Usage (repository root, ../shared beside it): bash benchmarks/gpu_reduced.sh [OUT_DIR]
set -euo pipefail
out="${1:-${OUT:-benchmarks/results}}"
mkdir -p "$out"
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))"
timeout 150 python benchmarks/reference.py --device cuda --out "$out/reference_cuda.json" || echo "reference benchmark: timed out or failed"
timeout 330 python benchmarks/queries.py --device cuda --minutes 10 --targets 0.05 --audit 1000 --decode-procs 16 \
    --workdir /tmp/vql_bench_gpu --out "$out/queries_cuda.json"

#!/usr/bin/env bash
# The paper profile on a lent GPU, in one command: everything comes back under $OUT (the archive and the log).
# Made for the device tool (README.md, "The paper on a GPU"): the repository root is the working folder there, the
# pack travels with `carry: [".gpu"]`, and python3 is the machine's, which holds PyTorch.
#   PYTHON=...          the interpreter (default python3)
#   PSKIN_GPU_PACK=...  the data pack (default .gpu/ham10000-paper.npz, made here by `make gpu-pack`)
#   PSKIN_GPU_ARGS=...  more arguments for `experiments.gpu_paper_run run` (a rehearsal shrinks the run with them)
#   PSKIN_GPU_TIMEOUT=  seconds before the run is stopped (default 585: inside the device's 600-second limit, with
#                       the script's own 9-minute window inside that)
set -uo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?OUT must name the folder whose files come back}"
export PYTHONUNBUFFERED=1
# shellcheck disable=SC2086  # PSKIN_GPU_ARGS is a list of arguments
timeout -k 10 "${PSKIN_GPU_TIMEOUT:-585}" "${PYTHON:-python3}" -m experiments.gpu_paper_run run \
  --pack "${PSKIN_GPU_PACK:-.gpu/ham10000-paper.npz}" --archive "$OUT/gpu_paper_run.tar.gz" \
  --log "$OUT/gpu_paper_run.log" ${PSKIN_GPU_ARGS:-}

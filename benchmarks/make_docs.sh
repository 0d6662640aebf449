#!/usr/bin/env bash
# Regenerate docs/benchmarks.md and docs/speed_profile.md: the one command to rerun.
#
#   bash benchmarks/make_docs.sh
#
# Uses the embedded default prior when guidedinv/weights/natural-prior.safetensors exists, else an
# untrained seeded network (labelled as such on the page). CPU-sized: 2 crops per dataset, NFE 20
# and 50 for DiffPIR and DDNM, 20 for DPS and RePaint: 840 network calls + 100 backward passes per
# image, 4 images. On one CPU thread that took 50 minutes with the untrained stand-in (0.75 s per
# call at 256x256); the default prior is about 1.2 s per call, so expect 1.5 hours, plus about 10
# minutes for the speed profile. On a GPU, pass a bigger protocol:
#   LIMIT=0 NFE=20,50,100 DPS_NFE=20,50,100 REPAINT_NFE=20,50,100 DEVICE=cuda bash benchmarks/make_docs.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${VIRTUAL_ENV:-}" ] && [ -f .venv/bin/activate ]; then . .venv/bin/activate; fi
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
DATA="${DATA:-../shared/data/val}"
MODEL="${MODEL:-default}"
if [ "$MODEL" = default ] && [ ! -f guidedinv/weights/natural-prior.safetensors ]; then
    echo "make_docs: guidedinv/weights/natural-prior.safetensors is missing: using an untrained random network" >&2
    MODEL=random-tiny
fi
guidedinv bench "$DATA/cbsd68" "$DATA/set14" --limit "${LIMIT:-2}" \
    --tasks superres4,deblur-gauss,deblur-motion,inpaint-box,inpaint-random \
    --nfe "${NFE:-20,50}" --method-nfe "dps=${DPS_NFE:-20}" --method-nfe "repaint=${REPAINT_NFE:-20}" \
    --model "$MODEL" --device "${DEVICE:-cpu}" --out runs/bench-docs --doc docs/benchmarks.md
python benchmarks/speed_profile.py --size 256 --steps 10 --device "${DEVICE:-cpu}" --doc docs/speed_profile.md

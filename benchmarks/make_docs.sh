#!/usr/bin/env bash
# Regenerate docs/benchmarks.md and docs/speed_profile.md: the one command to rerun.
#
#   bash benchmarks/make_docs.sh
#
# Uses the embedded default prior when guidedinv/weights/natural-prior.safetensors exists, else an
# untrained seeded network (labelled as such on the page). CPU-sized, two pages:
#   docs/benchmarks.md          the validation protocol of the model card: the default method (pnp)
#                               at 20 and 50 network evaluations against every classical
#                               baseline, 2 crops per dataset (4 images), 5 tasks;
#   docs/benchmarks-methods.md  every guided method (diffpir, ddnm, dps, repaint) at 20 evaluations,
#                               1 crop per dataset.
# The default prior takes about 1.2 s per call at 256x256 on one CPU thread: expect about 35 minutes
# for the first page and 25 for the second on one thread each, plus about 10 minutes for the speed profile. On a GPU, pass a bigger protocol:
#   LIMIT=0 NFE=20,50,100 METHODS_LIMIT=0 METHODS_NFE=20,50,100 DEVICE=cuda bash benchmarks/make_docs.sh
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
TASKS=superres4,deblur-gauss,deblur-motion,inpaint-box,inpaint-random
guidedinv bench "$DATA/cbsd68" "$DATA/set14" --limit "${LIMIT:-2}" --tasks "$TASKS" \
    --methods pnp,bicubic,lanczos,wiener,richardson_lucy,tv_deconv,biharmonic --nfe "${NFE:-20,50}" \
    --model "$MODEL" --device "${DEVICE:-cpu}" --out runs/bench-docs --doc docs/benchmarks.md
guidedinv bench "$DATA/cbsd68" "$DATA/set14" --limit "${METHODS_LIMIT:-1}" --tasks "$TASKS" \
    --methods diffpir,ddnm,dps,repaint --nfe "${METHODS_NFE:-20}" \
    --model "$MODEL" --device "${DEVICE:-cpu}" --out runs/bench-methods --doc docs/benchmarks-methods.md
python benchmarks/speed_profile.py --size 256 --steps 10 --device "${DEVICE:-cpu}" --doc docs/speed_profile.md

# Shared by the batch scripts of slurm/, which source it from the repository root: the Python to run, the
# GPUs of this node and what --gpu_ids to give, and time-stamped log lines (docs/cluster.md).
#   PYTHON          the Python with the project's packages (default: .venv/bin/python, else python3)
#   GPUS_PER_NODE   GPUs per node to use (default: what SLURM allocated to the job; 0 = the CPU)

log() { echo "[$script $(date '+%F %T')] $*"; }

if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
gpus=${GPUS_PER_NODE:-${SLURM_GPUS_ON_NODE:-${SLURM_GPUS_PER_NODE:-0}}}
gpus=${gpus##*:}  # --gpus-per-node=a100:4 gives a100:4
if [ "$gpus" -gt 0 ]; then
  gpu_ids=0  # under torchrun each process takes the GPU of its local rank (util/distributed.py)
else
  gpu_ids=-1
fi

#!/usr/bin/env bash
# One-command demo: build a small dataset from scikit-image's bundled photos, train IBCLN briefly, test it.
#
#   bash demo.sh
#
# 1. sets up ./.venv (scripts/setup_env.sh; skipped when PYTHON names an interpreter to use instead);
# 2. builds datasets/reflection_demo (scripts/make_demo_data.py: training crops, synthetic stand-ins for real
#    pairs, and 4 test pairs from photos never used for training);
# 3. trains checkpoints/reflection_demo with configs/demo.yaml's short schedule (CPU: a few minutes on 2 cores;
#    a GPU is used when torch sees one), with the ImageNet VGG19 of the perceptual loss when it can be obtained
#    (torch hub cache or download), otherwise with --vgg_weights random, which it says; it validates on the
#    demo's own test pairs after every epoch (checkpoints/$NAME/val_log.csv, printed at the end);
# 4. runs test.py: prints the PSNR/SSIM table and writes results/reflection_demo/test_final/index.html.
# Re-running reuses the dataset and the trained model (delete datasets/reflection_demo or
# checkpoints/reflection_demo/final_net_G_T.pth to rebuild them); testing always runs again.
# Environment overrides: PYTHON (interpreter), VGG_WEIGHTS (imagenet | random | path to a vgg19 .pth),
# FP32=1 (on the CPU, train and test in fp32 even where bf16 autocast is available).
set -euo pipefail
cd "$(dirname "$0")"

# The training run (data, name, seed, schedule) is configs/demo.yaml's; the command line below adds what depends
# on this machine. NAME and DATA are that file's name and dataroot.
CONFIG=configs/demo.yaml
NAME=reflection_demo
DATA=datasets/$NAME

if [ -z "${PYTHON:-}" ]; then
  bash scripts/setup_env.sh
  PYTHON=.venv/bin/python
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # an interpreter without this project installed
fi
start=$SECONDS

echo "== 1/3 demo data: $DATA"
"$PYTHON" scripts/make_demo_data.py "$DATA" --seed 0

gpu_ids=$("$PYTHON" -c "import torch; print(0 if torch.cuda.is_available() else -1)")
device="CPU"
[ "$gpu_ids" = "0" ] && device="GPU 0"
# The fast path (docs/usage.md, "Fast by default"): --channels_last auto lets the model pick the faster memory format for each
# phase on this machine (models/fast_path.py: on the CPU channels_last for testing, and for training with AVX-512
# or bf16 autocast; the same results to ~1e-6), and where the CPU has bfloat16 instructions --amp (bf16
# autocast, about twice as fast). FP32=1 keeps full fp32.
speed=(--channels_last auto)
if [ "$gpu_ids" = "-1" ]; then
  if [ "${FP32:-0}" != "1" ] && "$PYTHON" -c \
      "import sys; from util.machine import cpu_has_native_bf16; sys.exit(not cpu_has_native_bf16())"; then
    speed+=(--amp)
  fi
  device="CPU (${speed[*]})"
fi

if [ -f "checkpoints/$NAME/final_net_G_T.pth" ]; then
  echo "== 2/3 training: reusing checkpoints/$NAME/final_net_*.pth (delete them to train again)"
else
  vgg=${VGG_WEIGHTS:-}
  if [ -z "$vgg" ]; then
    # imagenet if torchvision's ImageNet VGG19 is in the torch hub cache or can be downloaded into it now.
    vgg=$("$PYTHON" - <<'EOF'
import os
import urllib.request

import torch
from torchvision.models import VGG19_Weights

url = VGG19_Weights.IMAGENET1K_V1.url
cached = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url))
choice = "random"
if os.path.isfile(cached):
    choice = "imagenet"
else:
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=10).close()
        reachable = True
    except Exception:
        reachable = False
    if reachable:
        try:
            # The same call torchvision makes, so that train.py then finds the file in the cache.
            torch.hub.load_state_dict_from_url(url, progress=True, check_hash=True)
            choice = "imagenet"
        except Exception:
            pass
print(choice)
EOF
)
    if [ "$vgg" = "random" ]; then
      echo "ImageNet VGG19 weights could not be downloaded: using --vgg_weights random (perceptual loss is meaningless in this demo)"
    fi
  fi
  echo "== 2/3 training on $device: $CONFIG (240 iterations on 64x64 crops), --vgg_weights $vgg"
  # --overwrite: a run cut short starts over.
  "$PYTHON" train.py --config "$CONFIG" --gpu_ids "$gpu_ids" --vgg_weights "$vgg" --overwrite \
    ${speed[@]+"${speed[@]}"}
fi

echo "== 3/3 testing on $device: $DATA/testB"
"$PYTHON" test.py --dataroot "$DATA" --name "$NAME" --model IBCLN --dataset_mode resize_natural_3 \
  --gpu_ids "$gpu_ids" --epoch final ${speed[@]+"${speed[@]}"}

if [ -f "checkpoints/$NAME/val_log.csv" ]; then
  echo "validation after each training epoch on $DATA/testB (checkpoints/$NAME/val_log.csv):"
  "$PYTHON" -m evaluation.validation "checkpoints/$NAME/val_log.csv"
fi
page=results/$NAME/test_final/index.html
echo "training page (loss and validation curves): $(pwd)/checkpoints/$NAME/web/index.html"
echo "demo done in $((SECONDS - start)) s: open $(pwd)/$page"

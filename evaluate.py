"""Evaluate like the paper: one command over several test sets, for a checkpoint or for saved predictions.

    python evaluate.py --name IBCLN --epoch final --sets objects=DIR postcard=DIR wild=DIR real20=DIR nature=DIR
    python evaluate.py --name IBCLN --epoch 60 70 80 final --sets nature=DIR [--align 32]
    python evaluate.py --sets nature=DIR --pred OUTPUTS_DIR [--pred_suffix _fake_Ts_03] [--pred_resize]

The work is done in evaluation/multiset.py; the flags are in options/evaluate_options.py; the protocol
(size policies, PSNR variants, fingerprints, the spread over checkpoints) is docs/protocol.md.
"""

from evaluation.multiset import evaluate
from options.base_options import run_cli
from options.evaluate_options import EvaluateOptions

if __name__ == "__main__":
    run_cli(evaluate, EvaluateOptions())

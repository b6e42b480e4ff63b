"""Test IBCLN: python test.py --dataroot DIR --name NAME --model IBCLN --epoch final ...

Runs and scores every test image (evaluation/testing.py) and writes results/<name>/<phase>_<epoch>/ with the
images, metrics.csv and index.html; the flags are in options/test_options.py.
"""

from evaluation.testing import test
from options.base_options import run_cli
from options.test_options import TestOptions

if __name__ == "__main__":
    run_cli(test, TestOptions())

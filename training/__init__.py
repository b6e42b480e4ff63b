"""Training: the loop that train.py runs."""

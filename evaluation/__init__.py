"""Evaluation: the PSNR/SSIM protocol, the cascade run and scored on test sets, test runs, validation, multi-set
evaluation."""

"""The size policies of a test set (docs/protocol.md): at which size inputs are run and scored, their short
names (the JSON's "size_policy") and the line that tables and pages print.

- released: resized down to a multiple of 4, as the released code did (the default);
- original (--keep_size): the original size, reflect-padded to a multiple of 4 for the network and cropped back;
- align<N> (--align N): input and ground truth resized to multiples of N, as the ERRNet-family test loaders do;
- max_size<M>+... (--max_size M): the longer side capped at M first.

Saved predictions (evaluate.py --pred) are scored at the ground truth's original size or at the --align size.
"""

from __future__ import annotations

from util.errors import UserError


def check_size_flags(align: int, keep_size: bool, prefix: str = "--") -> None:
    """Raise a UserError for an --align that is not a multiple of 4, or one given with --keep_size (the flags
    named with prefix: --val_ for validation during training)."""
    if align < 0 or align % 4:
        raise UserError(f"{prefix}align {align}: expected a positive multiple of 4 (the network's), e.g. 32; "
                        "0 = off")
    if align and keep_size:
        raise UserError(f"{prefix}align {align} with {prefix}keep_size: they are two size policies, choose one")


def describe_size_policy(align: int, keep_size: bool, max_size: int = 0) -> str:
    """Return one line saying at which size test images are run and scored (--align, --keep_size, --max_size)."""
    if align:
        line = (f"input and ground truth resized to multiples of {align} (bicubic, PIL's default: the "
                f"ERRNet-family alignment, --align {align})")
    elif keep_size:
        line = "original size (reflect-padded to a multiple of 4 for the network, outputs cropped back)"
    else:
        line = "resized down to a multiple of 4 (bilinear, as the released code)"
    if max_size > 0:
        line = f"longer side capped at {max_size} (Lanczos), then {line}"
    return f"size: {line}"


def size_policy_name(align: int, keep_size: bool, max_size: int = 0) -> str:
    """Return the short name of a size policy: released, original or align<N>, after max_size<N>+ when set."""
    name = f"align{align}" if align else "original" if keep_size else "released"
    return f"max_size{max_size}+{name}" if max_size > 0 else name


def describe_prediction_size(align: int) -> str:
    """Return the size line of scoring saved predictions (evaluate.py --pred): at the ground truth's original
    size (policy 'original'), or at the --align size (align<N>)."""
    if align:
        return f"{describe_size_policy(align, keep_size=False)}; predictions scored at that size"
    return "size: predictions scored at the ground truth's original size"

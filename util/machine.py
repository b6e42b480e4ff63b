"""The machine a figure was measured on (CPU model, usable cores) and its process-memory probes (RSS, peak)."""

from __future__ import annotations

import ctypes
import os
import platform


def cpu_model() -> str:
    """Return the CPU model name from /proc/cpuinfo (or platform's guess)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def usable_cores() -> int:
    """Return the number of cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def trim_heap() -> None:
    """Hand freed heap memory back to the OS (glibc malloc_trim), so that RSS reflects live memory; return None."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def status_mb(field: str) -> float:
    """Return a memory field of /proc/self/status (VmRSS, VmHWM) in MiB, or NaN where there is none."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def reset_rss_peak() -> bool:
    """Reset the process's RSS high-water mark (Linux /proc/self/clear_refs); return whether that worked."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False

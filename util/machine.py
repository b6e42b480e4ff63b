"""Probes of the machine: the CPU model and usable cores a figure was measured on, bfloat16 support of the CPU
and of a GPU, the memory available to this process (cgroup limits included), and its RSS and peak."""

from __future__ import annotations

import ctypes
import os
import platform

import torch


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


def cpu_has_native_bf16() -> bool:
    """Return whether this CPU has bfloat16 instructions (AVX512-BF16 or AMX), which oneDNN's bf16 kernels use."""
    # torch exposes these checks only as private helpers; a torch without them counts as "no".
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(check is not None and check() for check in checks)


def cuda_has_native_bf16(device: torch.device | int | None = None) -> bool:
    """Return whether the CUDA device (None: the current one) computes bfloat16 natively (compute capability >= 8.0).

    The device's own capability is asked: torch.cuda.is_bf16_supported speaks of the current device only,
    and without including_emulation=False it also says yes on a T4 or V100, which only emulate bf16.
    """
    if torch.version.hip:
        return True  # every ROCm GPU that torch supports has bf16 (torch.cuda.is_bf16_supported says so too)
    return torch.cuda.is_available() and torch.cuda.get_device_capability(device) >= (8, 0)


def available_bytes(device: torch.device) -> tuple[int | None, str]:
    """Return (bytes available to this process on device, or None where unknown; 'RAM' or the GPU's name)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        # Blocks torch's caching allocator holds but does not use count as free for this process.
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return free + cached, torch.cuda.get_device_name(device)
    return cpu_available_bytes(), "RAM"


def cpu_available_bytes() -> int | None:
    """Return the RAM this process can use: MemAvailable, or less under a container (cgroup) limit; None: unknown."""
    candidates = []
    meminfo = _read_meminfo()
    if "MemAvailable" in meminfo:
        candidates.append(meminfo["MemAvailable"])
    elif hasattr(os, "sysconf") and "SC_AVPHYS_PAGES" in os.sysconf_names:
        candidates.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    headroom = cgroup_headroom()
    if headroom is not None:
        candidates.append(headroom)
    return min(candidates) if candidates else None


# (mount point, controller name in /proc/self/cgroup ("" for cgroup v2), limit file, usage file)
CGROUP_MOUNTS = (("/sys/fs/cgroup", "", "memory.max", "memory.current"),
                 ("/sys/fs/cgroup/memory", "memory", "memory.limit_in_bytes", "memory.usage_in_bytes"))
PROC_SELF_CGROUP = "/proc/self/cgroup"


def cgroup_headroom() -> int | None:
    """Return limit - usage of the tightest memory cgroup (v2 or v1) holding this process, or None without a limit.

    A container's or job's memory limit bounds the process below what the host has free. The limit may be set
    on the process's own cgroup or on any ancestor, so each level up to the mount point is read; in a
    container the mount point is usually the container's own cgroup.
    """
    own = _own_cgroups()
    tightest = None
    for mount, controller, limit_file, usage_file in CGROUP_MOUNTS:
        if controller not in own:
            continue
        folder = os.path.normpath(mount + "/" + own[controller].lstrip("/"))
        while folder.startswith(mount):
            limit, usage = _read_int(os.path.join(folder, limit_file)), _read_int(os.path.join(folder, usage_file))
            # cgroup v1 reports "no limit" as a huge number (about 2^63); v2 as "max", which reads as None.
            if limit is not None and usage is not None and limit < 2**60:
                headroom = max(0, limit - usage)
                tightest = headroom if tightest is None else min(tightest, headroom)
            if folder == mount:
                break
            folder = os.path.dirname(folder)
    return tightest


def _own_cgroups() -> dict[str, str]:
    """Return this process's cgroup path per hierarchy: "" -> path for cgroup v2, "memory" -> path for v1."""
    paths = {}
    try:
        with open(PROC_SELF_CGROUP) as f:
            for line in f:
                _, controllers, path = line.rstrip("\n").split(":", 2)
                for name in controllers.split(",") if controllers else [""]:
                    paths[name] = path
    except (OSError, ValueError):
        pass
    return paths


def _read_meminfo() -> dict[str, int]:
    """Return /proc/meminfo's fields in bytes (empty where there is no such file)."""
    fields = {}
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                name, _, rest = line.partition(":")
                parts = rest.split()
                if parts and parts[0].isdigit():
                    fields[name] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    except OSError:
        pass
    return fields


def _read_int(path: str) -> int | None:
    """Return the integer in a one-line file, or None (missing, unreadable, or not a number such as 'max')."""
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None

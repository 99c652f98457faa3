"""The machine a run trains on: which device, which precision, which memory layout, and how a record describes it.

:func:`autocast_dtype` chooses bf16 autocast where it pays: always on CUDA; on CPUs with AVX512-BF16 for the networks
whose registry entry says so (ResNets, where it about doubles the speed). :func:`machine_description` is what every
run record and benchmark says about the machine.
"""

from __future__ import annotations

import os
import platform
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..errors import ParameterError
from .config import TrainConfig
from .models import model_spec

# Every model here halves its maps five times; the fifth halving takes a map at 1/16 of the image, so at 16 px or
# less that stride-2 convolution sees a 1x1 map. On the CPU (torch 2.14, oneDNN) the bf16 weight gradient of a
# stride-2 convolution on a 1x1 map is garbage, different on every call and NaN about one call in ten (dense 3x3 and
# depthwise 5x5 alike); on a 2x2 map it matches fp32 to 0.4 % (measured on this project's 2-core Xeon with
# AVX512-BF16).
SMALLEST_CPU_BF16_SIZE = 17


def select_device(name: str = "auto") -> torch.device:
    """``auto``: the GPU when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ParameterError(f"device: expected 'auto', 'cpu' or 'cuda[:N]', got {name!r}.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ParameterError(f"device: {name!r} was asked for but no CUDA GPU is available; use 'cpu' or 'auto'.")
    return device


def autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """bf16 where it pays: always on CUDA; on CPUs with AVX512-BF16 where the model's registry entry says so.
    ``precision='fp32'`` or ``'bf16'`` overrides. ``deterministic`` runs on the CPU stay in fp32: oneDNN's bf16
    kernels differ from run to run in the last bits (measured: two identical bf16 runs ended with different weights,
    fp32 runs with equal ones). Images of 16 px or less stay in fp32 on the CPU, and an explicit ``'bf16'`` is
    refused there (see ``SMALLEST_CPU_BF16_SIZE``)."""
    if config.precision == "fp32":
        return None
    if device.type == "cpu" and config.image_size < SMALLEST_CPU_BF16_SIZE:
        if config.precision == "bf16":
            raise ParameterError(f"precision='bf16' on the CPU needs image_size >= {SMALLEST_CPU_BF16_SIZE} (got "
                                 f"{config.image_size}): at that size the last stride-2 convolution sees a 1x1 map, "
                                 "and oneDNN's bf16 weight gradient for it is garbage (NaN at times). Use "
                                 "precision='fp32' or 'auto'.")
        return None
    if config.precision == "bf16" or device.type == "cuda":
        return torch.bfloat16
    if config.deterministic:
        return None
    return torch.bfloat16 if torch.cpu._is_avx512_bf16_supported() and model_spec(config.model).cpu_bf16 else None


def use_channels_last(config: TrainConfig, device: torch.device) -> bool:
    """channels_last unless the config says otherwise: `pskin bench` measured it fastest here for every case it
    tried (resnet18/50 bf16 and efficientnet_b0 fp32 at 64 and 128 px on the 2-core CPU; on CUDA it is the usual
    choice with bf16)."""
    return True if config.channels_last is None else config.channels_last


def autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def distributed() -> tuple[int, int]:
    """(rank, world size) when started by torchrun, else (0, 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return (int(os.environ.get("RANK", "0")), world) if world > 1 else (0, 1)


def machine_description() -> dict[str, Any]:
    """What a result was measured on: CPU model and flags, cores, threads, memory, library versions, GPU."""
    import numpy as np
    import pandas as pd
    import torchvision

    cpu, memory = _proc_fields("cpuinfo"), _proc_fields("meminfo").get("MemTotal")  # memory: "<n> kB"
    gpu = None
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        gpu = {"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
               "count": torch.cuda.device_count(), "cuda": torch.version.cuda}
    return {
        "cpu_model": cpu.get("model name") or platform.processor() or platform.machine(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gib": round(int(memory.split()[0]) / 2**20, 1) if memory else None,
        "avx512_bf16": bool(torch.cpu._is_avx512_bf16_supported()),
        "amx": "amx_bf16" in cpu.get("flags", "").split(),
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "gpu": gpu,
        "python": sys.version.split()[0], "torch": torch.__version__, "torchvision": torchvision.__version__,
        "numpy": np.__version__, "pandas": pd.__version__, "pskinlib": __version__,
        "platform": platform.platform(),
    }


def _proc_fields(name: str) -> dict[str, str]:
    """The first value of each ``key: value`` line of ``/proc/<name>``; empty where there is none (not Linux: the
    platform module answers instead)."""
    try:
        lines = Path("/proc", name).read_text().splitlines()
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for key, _, value in (line.partition(":") for line in lines):
        fields.setdefault(key.strip(), value.strip())
    return fields


def run_environment(device: torch.device, amp_dtype: torch.dtype | None, channels_last: bool,
                    world_size: int = 1) -> dict[str, Any]:
    """The ``environment`` of a run record: the machine, and the device, precision and layout the run used."""
    machine = machine_description()
    return {
        **{key: machine[key] for key in ("python", "torch", "torchvision", "numpy", "pandas", "pskinlib", "platform")},
        "machine": platform.machine(), "cpu_count": machine["logical_cpus"],
        "threads": machine["torch_threads"], "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else machine["cpu_model"],
        "precision": "bf16 autocast" if amp_dtype is not None else "fp32",
        "channels_last": channels_last, "world_size": world_size,
    }

"""What this process can run on: the one place that counts GPUs (doctor, preflight, infer ask here)."""
from __future__ import annotations


def visible_gpus() -> int:
    """Visible CUDA devices (CUDA_VISIBLE_DEVICES respected); 0 when torch is missing or has no CUDA."""
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def gpu_memory() -> list[int]:
    """Total memory in bytes of each visible CUDA device, in order; empty when torch is missing or has no CUDA."""
    try:
        import torch
    except ImportError:
        return []
    if not torch.cuda.is_available():
        return []
    return [torch.cuda.get_device_properties(i).total_memory for i in range(torch.cuda.device_count())]

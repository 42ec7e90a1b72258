"""What this process can run on: the one place that counts GPUs (doctor, preflight, infer ask here)."""
from __future__ import annotations


def visible_gpus() -> int:
    """Visible CUDA devices (CUDA_VISIBLE_DEVICES respected); 0 when torch is missing or has no CUDA."""
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0

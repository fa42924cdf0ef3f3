"""``python -m narrate.kernels``: build our kernels (``make setup`` runs it)."""

import torch

from narrate.kernels import build, cpu_supported

if not cpu_supported():
    print(f"narrate: kernels not built: this CPU has no AVX2 ({torch.backends.cpu.get_cpu_capability()})")
else:
    print(f"narrate: kernels built: {build()}")

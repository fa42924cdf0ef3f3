"""``python -m narrate.kernels``: build our kernels (``make setup`` runs it). Exit status 0 when
they are built or this CPU cannot run them (nothing to build), 1 when the build failed."""

import sys

import torch

from narrate.kernels import available, build, cpu_supported

if not cpu_supported():
    print(f"narrate: kernels not built: this CPU has no AVX2 ({torch.backends.cpu.get_cpu_capability()})")
    sys.exit(0)
try:
    library = build()
except Exception as e:  # the compiler's or ninja's error, whatever its type: one line, and a failure
    reason = " ".join(str(e).split())[:200] or type(e).__name__
    print(f"narrate: kernels not built ({reason}); torch's operations are used", file=sys.stderr)
    sys.exit(1)
if not available():
    print(f"narrate: kernels built at {library} but they do not load or do not agree with torch", file=sys.stderr)
    sys.exit(1)
print(f"narrate: kernels built: {library}")

"""Our int8-weight linear kernel (``int8_linear.cpp``): built once at install, loaded if built.

A decoder step multiplies a few rows (one per stream) by int8 weights. torch's
``_weight_int8pack_mm`` did that 1.5-4x slower than this kernel at one row on an AVX2 CPU (AMD
EPYC, one row / four: in_proj 65/112 -> 30/78 us, the 4608-row head 160/327 -> 94/316 us). The kernel
keeps each output's sum in one order (over the inner axis, with fused multiply-adds) whatever
the number of rows, so a stream's output does not depend on its batch.

``make setup`` runs ``python -m narrate.engine.int8_kernel`` (torch's extension builder, g++,
~45 s). At run time the library is only loaded, never built: where it is missing, or the CPU
lacks AVX2/FMA, ``PackedLinear`` uses torch's kernel.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

import torch

NAME = "narrate_int8_linear"
SOURCE = Path(__file__).with_name("int8_linear.cpp")


def cpu_supported() -> bool:
    return torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")


def build_dir() -> Path:
    """Per torch version and source text, so a changed source is never run from an old build."""
    key = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]
    root = Path(os.environ.get("NARRATE_KERNEL_DIR") or Path.home() / ".cache" / "narrate" / "kernels")
    return root / f"torch{torch.__version__.replace('+', '-')}-{key}"


def library() -> Path:
    return build_dir() / f"{NAME}.so"


def build() -> Path:
    from torch.utils.cpp_extension import load

    folder = build_dir()
    folder.mkdir(parents=True, exist_ok=True)
    load(NAME, [str(SOURCE)], extra_cflags=["-O3", "-mavx2", "-mfma"], is_python_module=False,
         build_directory=str(folder), verbose=False)
    return library()


def panels(q: torch.Tensor) -> torch.Tensor:
    """int8 weights [out, in] -> the kernel's layout [ceil(out / 16), in, 16] (zero-padded): each
    16 outputs' weights one contiguous panel, read front to back."""
    out, inner = q.shape
    padded = q.new_zeros((out + 15) // 16 * 16, inner)
    padded[:out] = q
    return padded.view(-1, 16, inner).transpose(1, 2).contiguous()


def unpanel(p: torch.Tensor, out: int) -> torch.Tensor:
    """``panels`` undone: [out, in]."""
    return p.transpose(1, 2).reshape(-1, p.shape[1])[:out]


@functools.lru_cache(maxsize=1)
def available() -> bool:
    """Whether ``torch.ops.narrate.int8_linear`` is loaded and right (checked against fp32)."""
    if not cpu_supported() or not library().exists():
        return False
    try:
        torch.ops.load_library(str(library()))
        g = torch.Generator().manual_seed(0)
        w = torch.randint(-127, 128, (37, 32), dtype=torch.int8, generator=g)
        scale, bias, x = torch.rand(37, generator=g), torch.randn(37, generator=g), torch.randn(5, 32, generator=g)
        y = torch.ops.narrate.int8_linear(x, panels(w), scale, bias)
        return bool(torch.allclose(y, torch.addmm(bias, x, (w.float() * scale[:, None]).t()), rtol=1e-4, atol=1e-4))
    except (OSError, RuntimeError):
        return False


if __name__ == "__main__":
    if not cpu_supported():
        print(f"narrate: int8 kernel not built: this CPU has no AVX2 ({torch.backends.cpu.get_cpu_capability()})")
    else:
        print(f"narrate: int8 kernel built: {build()}")

"""Our CPU kernels for decoding and vocoding, built once at install, loaded if built:
  - ``int8_linear.cpp``: int8-weight linear layers (``PackedLinear``). A decoder step multiplies
    a few rows (one per stream) by int8 weights, which torch's ``_weight_int8pack_mm`` does
    several times slower on an AVX2 CPU. Each row is quantized to int16 on its own and summed in
    exact integers.
  - ``mamba_step.cpp``: a Mamba layer's convolution and selective-scan step (``SteppingMamba``),
    two passes instead of ~20 tensor operations.
  - ``rowwise_mm.cpp``: a product of a few fp32 rows, each on its own, to mix every stream's
    code vectors by their probabilities (``stepping.StepFunction``), instead of a bmm per stream.
  - ``griffin_lim.cpp``: the vocoder's Griffin-Lim iterations on a streaming block
    (``codec.mel.MelSpec.griffin_lim``): the work between the FFTs as plain loops.
  - ``mel_magnitudes.cpp``: log-mel -> linear magnitudes for it (``MelSpec.magnitudes``), each
    mel band's run of bins walked directly instead of sparse matrix products.
  - ``band_attention.cpp``: a decoding step's cross-attention over each stream's text band
    (rotated as read) and speaker tokens (``NarrateModel.decode_step``), one operation per layer
    instead of rotating and concatenating every layer's keys and calling torch's attention.
Each computes a row from that row alone, in one order whatever the number of rows, so a
stream's output does not depend on its batch. What each gained is in docs/performance.md.

``make setup`` runs ``python -m narrate.kernels`` (torch's extension builder, g++, ninja), which
builds the library into the user's cache (``$XDG_CACHE_HOME/narrate/kernels``, default
``~/.cache/narrate/kernels``; ``NARRATE_KERNEL_DIR`` overrides). At run time the library is only
loaded, never built: where the CPU lacks AVX2/FMA, or the library is missing (then narrate says
so once, on stderr), decoding and vocoding run torch's operations instead.

Which of the two runs (the backend) is decided once, by ``choose``: the narrator calls it when it
is made (in each process that narrates, so each node of a cluster decides for its own CPU) and
passes the answer down to the engine's layers and the vocoder.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
from pathlib import Path

import torch

NAME = "narrate_kernels"
SOURCES = [Path(__file__).with_name(n)
           for n in ("int8_linear.cpp", "mamba_step.cpp", "rowwise_mm.cpp", "griffin_lim.cpp", "mel_magnitudes.cpp",
                     "band_attention.cpp")]


def cpu_supported() -> bool:
    return torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")


def cache_home() -> Path:
    """The user's cache folder (XDG base directories: ``$XDG_CACHE_HOME`` if set and absolute)."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    return Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"


def build_dir() -> Path:
    """Per torch version and source text, so a changed source is never run from an old build."""
    h = hashlib.sha256()
    for s in SOURCES:
        h.update(s.read_bytes())
    root = Path(os.environ.get("NARRATE_KERNEL_DIR") or cache_home() / "narrate" / "kernels")
    return root / f"torch{torch.__version__.replace('+', '-')}-{h.hexdigest()[:12]}"


def library() -> Path:
    return build_dir() / f"{NAME}.so"


def build() -> Path:
    from torch.utils.cpp_extension import load

    folder = build_dir()
    folder.mkdir(parents=True, exist_ok=True)
    load(NAME, [str(s) for s in SOURCES], extra_cflags=["-O3", "-mavx2", "-mfma"], is_python_module=False,
         build_directory=str(folder), verbose=False)
    return library()


def panels(q: torch.Tensor) -> torch.Tensor:
    """int8 weights [out, in] -> the linear kernel's layout [ceil(out / 8), in / 2, 8, 2]
    (zero-padded): each 8 outputs' weights one contiguous panel, read front to back, the inner
    axis in pairs (the kernel multiplies two at a time)."""
    out, inner = q.shape
    padded = q.new_zeros((out + 7) // 8 * 8, inner)
    padded[:out] = q
    return padded.view(-1, 8, inner // 2, 2).permute(0, 2, 1, 3).contiguous()


def unpanel(p: torch.Tensor, out: int) -> torch.Tensor:
    """``panels`` undone: [out, in]."""
    return p.permute(0, 2, 1, 3).reshape(-1, p.shape[1] * 2)[:out]


@functools.lru_cache(maxsize=1)
def available() -> bool:
    """Whether the library is loaded and right: its int8 linear checked against fp32 here (the
    tests hold every operation to its torch reference)."""
    if not cpu_supported():
        return False
    if not library().exists():
        print("narrate: our CPU kernels are not built (python -m narrate.kernels builds them); "
              "torch's operations are used", file=sys.stderr)
        return False
    try:
        torch.ops.load_library(str(library()))
        g = torch.Generator().manual_seed(0)
        w = torch.randint(-127, 128, (37, 32), dtype=torch.int8, generator=g)
        scale, bias, x = torch.rand(37, generator=g), torch.randn(37, generator=g), torch.randn(5, 32, generator=g)
        y = torch.ops.narrate.int8_linear(x, panels(w), scale, bias)
        # (the int16 activations add up to amax / 65534 per input: ~1e-4 here)
        return bool(torch.allclose(y, torch.addmm(bias, x, (w.float() * scale[:, None]).t()), rtol=1e-3, atol=1e-2))
    except (OSError, RuntimeError):
        return False


def choose(wanted: bool | None = None) -> bool:
    """The backend: True runs our kernels, False torch's operations (the reference; the same
    results up to float rounding). None: ours where they are built and right on this CPU. True
    where they are not: a one-line NarrateError."""
    if wanted is None:
        return available()
    if wanted and not available():
        from narrate.errors import NarrateError

        raise NarrateError("our CPU kernels are not available here (built by python -m narrate.kernels, "
                           "on a CPU with AVX2 and FMA)")
    return bool(wanted)

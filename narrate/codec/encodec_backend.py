"""EnCodec (24 kHz, 75 frames/s, 1024-entry codebooks) through the `encodec` package, for
models trained where its weights exist (optional extra; weights are a local file).

`import encodec` imports torchaudio at module level only for helpers narrate never calls
(file loading, resampling: narrate resamples with librosa). Where torchaudio is missing or
broken (the CUDA build pip finds beside CPU torch), a stand-in module that refuses every use
is registered under that name before the import, so encodec's model code loads cleanly.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import torch

from narrate.codec.base import Codec, StreamDecoder
from narrate.errors import ModelError

BANDWIDTH_CODEBOOKS = {1.5: 2, 3.0: 4, 6.0: 8, 12.0: 16, 24.0: 32}


class _Unavailable(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):  # module introspection (__file__, __spec__...) sees a plain module
            raise AttributeError(name)
        raise ImportError(f"torchaudio is not usable here (narrate does not need it); '{name}' was requested")


def import_encodec():
    stand_in = False
    try:
        import torchaudio  # noqa: F401
    except Exception:  # ImportError, or OSError from a CUDA build's missing libraries
        for name in [m for m in sys.modules if m == "torchaudio" or m.startswith("torchaudio.")]:
            del sys.modules[name]
        sys.modules["torchaudio"] = _Unavailable("torchaudio")
        stand_in = True
    try:
        import encodec
    finally:
        if stand_in:  # encodec.utils keeps its reference; nobody else should find the stand-in
            del sys.modules["torchaudio"]
    return encodec


def _load_checkpoint(path) -> dict:
    """The state dict in an EnCodec checkpoint, unpickled with torch's weights-only loader.

    weights_only=True is passed explicitly, which TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD cannot
    override: a pickled payload in a file a model config names is refused, never run.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - UnpicklingError, zip/EOF/OS errors: all the file's fault
        reason = " ".join(str(e).split())[:100] or type(e).__name__
        raise ModelError(f"EnCodec checkpoint '{path}' is not a plain weights file ({reason})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"EnCodec checkpoint '{path}' does not hold a state dict of tensors")
    return state


class EncodecCodec(Codec):
    name = "encodec"

    def __init__(self, bandwidth: float = 6.0, checkpoint: str | None = None, pretrained: bool = True):
        encodec = import_encodec()
        if bandwidth not in BANDWIDTH_CODEBOOKS:
            raise ValueError(f"EnCodec bandwidth must be one of {sorted(BANDWIDTH_CODEBOOKS)}")
        self.model = encodec.EncodecModel.encodec_model_24khz(pretrained=False)
        if pretrained:
            if not checkpoint or not Path(checkpoint).exists():
                raise ValueError("EnCodec weights need a local checkpoint file (config 'checkpoint'); "
                                 "they cannot be downloaded here")
            self.model.load_state_dict(_load_checkpoint(checkpoint))
        self.model.set_target_bandwidth(bandwidth)
        self.model.eval()
        self.bandwidth = bandwidth
        self.sample_rate = self.model.sample_rate
        self.frame_rate = self.model.frame_rate
        self.codebook_sizes = [self.model.quantizer.bins] * BANDWIDTH_CODEBOOKS[bandwidth]

    @classmethod
    def from_config(cls, config: dict) -> "EncodecCodec":
        return cls(config.get("bandwidth", 6.0), config.get("checkpoint"), config.get("pretrained", True))

    @torch.no_grad()
    def encode(self, wav: np.ndarray) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(wav, np.float32)).view(1, 1, -1)
        frames = self.model.encode(x)
        return torch.cat([codes for codes, _ in frames], dim=-1)[0]  # [K, T]

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> np.ndarray:
        wav = self.model.decode([(codes.unsqueeze(0).long(), None)])
        return wav[0, 0].numpy().astype(np.float32)

    def stream_decoder(self, kernel: bool | None = None) -> StreamDecoder:
        return _EncodecStreamDecoder(self)  # (no operations of ours: the backend changes nothing)


class _EncodecStreamDecoder(StreamDecoder):
    """Decodes each block with ``context`` earlier frames in front and keeps only the new
    frames' samples: bounded memory, the decoder's receptive field mostly covered."""

    def __init__(self, codec: EncodecCodec, context: int = 16):
        self.codec, self.context = codec, context
        self.past: torch.Tensor | None = None  # [K, <=context]
        self.hop = int(round(codec.sample_rate / codec.frame_rate))

    def push(self, codes: torch.Tensor) -> np.ndarray:
        frames = codes if self.past is None else torch.cat([self.past, codes], dim=1)
        wav = self.codec.decode(frames)
        skip = 0 if self.past is None else self.past.shape[1] * self.hop
        self.past = frames[:, -self.context :]
        return wav[skip : skip + codes.shape[1] * self.hop]

    def flush(self) -> np.ndarray:
        return np.zeros(0, np.float32)

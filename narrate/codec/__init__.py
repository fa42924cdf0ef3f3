"""Audio codecs: waveform <-> tokens [K, T]. The model's config names its codec backend."""

from narrate.codec.base import Codec, StreamDecoder, codec_from_config

__all__ = ["Codec", "StreamDecoder", "codec_from_config"]

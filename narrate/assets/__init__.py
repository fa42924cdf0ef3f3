"""What narrate ships beside its code: the bundled model folders (``models/NAME``) and voices
(``voices/NAME.wav`` with its ``.npy`` embedding and ``.txt`` description).

They are package data, found through ``importlib.resources``, so a narrate installed from a
wheel finds them as a source checkout does (the checkout's top-level ``models`` and ``voices``
are links to these folders). narrate reads them as files (safetensors, soundfile), so they
must be on disk: pip always unpacks a wheel, and a zipped install is not supported.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

ROOT = Path(str(files(__name__)))
MODELS = ROOT / "models"
VOICES = ROOT / "voices"

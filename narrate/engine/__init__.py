"""The streaming TTS engine: Mamba decoder over codec tokens, RoPE cross-attention over a
sliding text window, semantic guidance, and an explicit state carried across chunks."""

"""Audio output: streaming sinks for every output format (sinks) and the resume sidecar (resume).

Audio flows through here as mono float32 blocks in [-1, 1]; nothing accumulates in memory, so a
book of any length is written with constant memory.
"""

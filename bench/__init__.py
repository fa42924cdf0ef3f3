"""The narrate benchmark: speed, memory, throughput, quality, seams and codec, against piper.

Run ``python -m bench.run [--quick]``; it writes bench/results/REPORT.md, results.json and PNGs.
Modules: analysis (pure signal/arithmetic helpers), texts (benchmark text), render (narrate and
piper renders), speed, memory (+ memory_child), quality, plots, report, run (the entry).
"""

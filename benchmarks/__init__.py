"""Speed, memory and quality benchmarks (issue 8). Not part of the library or the default test run.

Each module runs with one command, from the repository root, e.g. `python -m benchmarks.train_throughput`
(or `python benchmarks/train_throughput.py`); `--quick` runs it at tiny sizes in seconds (a smoke test).
"""

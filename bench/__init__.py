"""Benchmarks of vexora-checkout: ``python -m bench.run [--quick] [--only NAME]`` (see run.py)."""

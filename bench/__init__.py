"""Benchmark harness of clustcontrol: `python bench/run.py --quick|--full [--only METRIC]`."""

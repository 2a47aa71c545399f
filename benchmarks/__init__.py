"""Benchmarks of the mesh: ``python -m benchmarks`` (see ``benchmarks/__main__.py``).

``bench_core.py`` and ``bench_runtime.py`` are single-process micro-benchmarks
printing JSON; ``scenarios/`` holds the testnet scenarios that ``python -m
benchmarks`` runs, ``report.py`` writes their JSON, Markdown and plots, and
``RESULTS.md`` is the results page from a full run.
"""

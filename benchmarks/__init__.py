"""Side-by-side benchmarks of gangplank (issue 5); run them with ``python benchmarks/run.py``."""

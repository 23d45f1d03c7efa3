"""syncmesh benchmarks: `make bench` (python -m bench). Results in bench/results.json and bench/RESULTS.md."""

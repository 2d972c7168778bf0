#!/usr/bin/env python
"""genbench's command: run a sweep of models x tasks on one dataset and write the results table.

    python run_benchmarks.py                      # the quick preset on the embedded MNIST digits
    python run_benchmarks.py --preset default     # the full comparison
    python run_benchmarks.py list                 # models, tasks, datasets, presets
    python run_benchmarks.py --help

Same as the ``genbench`` console script installed by ``pip install -e .``.
"""

import sys

from genbench.cli import main

if __name__ == "__main__":
    sys.exit(main())

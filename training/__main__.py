"""``python -m training``: the training command line.

``OMP_WAIT_POLICY`` is read once, when torch loads its OpenMP runtime, so it is set here
before anything imports torch: PASSIVE keeps idle OpenMP threads from spinning, which slows
epochs down many times over on small shared machines. A value already set wins.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from training.cli import main

raise SystemExit(main())

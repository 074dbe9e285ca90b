"""``python -m pipeline``: the same as the ``picotflm`` command."""
from pipeline.cli import main

raise SystemExit(main())

"""``python -m simulator``: the reference simulator of simulation jobs."""

from simulator.runner import main

raise SystemExit(main())

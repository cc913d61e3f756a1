"""``python -m flows.simulator``: the reference simulator of simulation jobs."""

from flows.simulator.runner import main

raise SystemExit(main())

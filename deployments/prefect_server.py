"""``prefect server ...`` with the work-pool schema check memoised.

Why: profiling the server under a burst of submissions (py-spy, bench/submit_burst.py)
showed two thirds of its event-loop time in ``create_flow_run_from_deployment``
re-checking that the Docker pool's job-variables *schema* is a valid JSON schema
(``is_valid_schema`` and ``jsonschema.validate``, each a full metaschema validation
of a ~40-property schema), for every run. The schema changes only when a pool is
edited, so a check that passed once is remembered, keyed by the schema's content;
a new or edited schema is checked as before, and the *values* of every run's job
variables are still validated each time. Everything else is Prefect's own CLI.

Usage: python -m deployments.prefect_server server start --host 127.0.0.1 --port 4200
"""

from __future__ import annotations

import json
import sys
from typing import Any

MAX_REMEMBERED = 256


def memoise_schema_checks() -> None:
    from prefect.utilities.schema_tools import validation

    validator = validation._VALIDATOR
    check = validator.check_schema  # a bound classmethod
    passed: set[str] = set()

    def check_schema(schema: Any, *args: Any, **kwargs: Any) -> None:
        try:
            key = json.dumps([schema, sorted(kwargs)], sort_keys=True, default=repr)
        except (TypeError, ValueError):
            return check(schema, *args, **kwargs)
        if key in passed:
            return None
        check(schema, *args, **kwargs)  # raises SchemaError for an invalid schema: never remembered
        if len(passed) >= MAX_REMEMBERED:
            passed.clear()
        passed.add(key)
        return None

    validator.check_schema = staticmethod(check_schema)


def main() -> int:
    memoise_schema_checks()
    from prefect.cli import app

    sys.argv[0] = "prefect"
    return app()


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env bash
# The platform's MLflow tracking server in its own venv (deployments/mlflow_server.py runs it).
# Why apart: mlflow pulls its own FastAPI/Starlette, SQLAlchemy, pandas and pyarrow pins, which must
# not meet Prefect's. Cached: a second run only checks the version. psycopg2 for a PostgreSQL store.
set -euo pipefail
VENV=${OPEVA_MLFLOW_VENV:-${OPEVA_CACHE:-/var/cache/opeva}/mlflow-venv}
VERSION=${OPEVA_MLFLOW_VERSION:-3.17.2}
if "$VENV/bin/python" -c "import sys, mlflow; sys.exit(mlflow.__version__ != '$VERSION')" 2>/dev/null; then
  echo "MLflow $VERSION cached in $VENV"
  exit 0
fi
rm -rf "$VENV"
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check "mlflow==$VERSION" psycopg2-binary 2> >(grep -v "is ignored" >&2)
"$VENV/bin/python" -c "import mlflow; print('MLflow', mlflow.__version__, 'installed in $VENV')"

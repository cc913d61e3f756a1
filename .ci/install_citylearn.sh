#!/usr/bin/env bash
# CityLearn in its own venv, for the smoke check of built datasets (core/dataset_check.py).
# Why apart: CityLearn pins numpy<2 and gymnasium<=0.28 and pulls torch (with CUDA wheels, ~6 GB
# installed); none of that may meet Prefect's pins. Cached: a second run only checks the version.
set -euo pipefail
VENV=${OPEVA_CITYLEARN_VENV:-${OPEVA_CACHE:-/var/cache/opeva}/citylearn-venv}
VERSION=${OPEVA_CITYLEARN_VERSION:-2.5.0}
if "$VENV/bin/python" -c "import sys, citylearn; sys.exit(citylearn.__version__ != '$VERSION')" 2>/dev/null; then
  echo "CityLearn $VERSION cached in $VENV"
  exit 0
fi
rm -rf "$VENV"
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check "citylearn==$VERSION" 2> >(grep -v "is ignored" >&2)
"$VENV/bin/python" -c "from citylearn.citylearn import CityLearnEnv; import citylearn; print('CityLearn', citylearn.__version__, 'installed in $VENV')"

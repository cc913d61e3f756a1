# Two commands: `make up` runs the platform, `make test` runs the tests.
PYTHON ?= python3
export PYTHONPATH := $(CURDIR)

.PHONY: up check test install image seed bench setup host clean citylearn mlflow lab lab-cut lab-heal

install: var/.installed  ## Python dependencies of the platform and its tests

var/.installed: pyproject.toml
	$(PYTHON) -m pip install -q --disable-pip-version-check -e '.[test]'
	mkdir -p var && touch var/.installed

up: install mlflow  ## Prefect server, MongoDB-compatible server, MLflow, work pools + workers, REST API (foreground; Ctrl-C stops)
	$(PYTHON) -m deployments.up

check: install mlflow  ## The fast tier: domain, API and flows logic against real in-process services; no Docker engine (< 2 min)
	$(PYTHON) -m pytest -q tests/fast

test: install mlflow  ## Everything: the fast tier, then the whole platform with Docker workers and containers
	$(PYTHON) -m pytest -q tests/fast
	$(PYTHON) -m pytest -q --durations=25 tests/e2e

image:  ## Build the runtime image (offline-capable: debootstrap base + wheelhouse)
	bash deployments/build_image.sh

seed:  ## Fill the local MongoDB-compatible server with two sample sites in the real OPEVA layout (make up must be running)
	$(PYTHON) -m tools.seed_site --uri $${MONGO_URI:-mongodb://127.0.0.1:$${OPEVA_MONGO_PORT:-27017}}

setup:  ## Re-create pools and deployments after editing the hosts file, with the configuration `make up` runs with (docs/images.md)
	$(PYTHON) -m deployments.setup $${MONGO_URI:+--mongo-uri "$$MONGO_URI"}

host: install  ## On a compute host's own machine: check it and run its worker (NAME=<host>; OPEVA_PREFECT_API_URL, OPEVA_PREFECT_AUTH_STRING; docs/hosts.md)
	@test -n "$(NAME)" || { echo "make host NAME=<host in the server's hosts.yaml>"; exit 2; }
	$(PYTHON) -m deployments.join_host --name "$(NAME)"

lab: install mlflow  ## make up plus HOSTS=N simulated hosts lab-1..lab-N, each with its own namespace, engine and worker; LOCAL_DATA=lab-2: without the shared data root (root; docs/lab.md)
	$(PYTHON) -m deployments.lab run --hosts $(or $(HOSTS),2) --local-data "$(LOCAL_DATA)"

lab-cut:  ## Cut one lab host's link (HOST=lab-2): its worker stops heart-beating, as a lost host's does
	@test -n "$(HOST)" || { echo "make lab-cut HOST=lab-<n>"; exit 2; }
	$(PYTHON) -m deployments.lab cut --host "$(HOST)"

lab-heal:  ## Plug a cut lab host's link back in (HOST=lab-2)
	@test -n "$(HOST)" || { echo "make lab-heal HOST=lab-<n>"; exit 2; }
	$(PYTHON) -m deployments.lab heal --host "$(HOST)"

citylearn:  ## CityLearn 2.5 in its own venv (/var/cache/opeva/citylearn-venv): built datasets get a CityLearn smoke check
	bash .ci/install_citylearn.sh

mlflow:  ## MLflow tracking server in its own venv (/var/cache/opeva/mlflow-venv; docs/mlflow.md); OPEVA_MLFLOW=0 skips it
	@if [ "$${OPEVA_MLFLOW:-1}" != 0 ]; then bash .ci/install_mlflow.sh; fi

bench:  ## Benchmarks (each prints a table)
	for b in bench/*.py; do $(PYTHON) $$b || exit 1; done

clean:  ## Remove local state (Prefect database, Mongo files, shared data)
	rm -rf var .build

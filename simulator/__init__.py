"""Reference multi-agent energy-flexibility simulator: the default workload of simulation jobs.

Each building of a CityLearn-format district (load, PV, battery, EV chargers) is
an agent; ``python -m simulator`` runs one experiment under the platform's
simulator contract (see :mod:`simulator.runner`). Modules:

- :mod:`~simulator.config`: the experiment YAML, ``validate_config`` and ``ConfigError``
  (light: the REST API imports it to refuse bad configs).
- :mod:`~simulator.dataset`: read a dataset folder; :mod:`~simulator.sample`: make / write the built-in sample.
- :mod:`~simulator.environment`: the vectorised district simulation.
- :mod:`~simulator.agents`: no control, rule-based and Q-learning controllers.
- :mod:`~simulator.metrics`: KPIs and their ratio to the no-control baseline.
- :mod:`~simulator.mlflow_client`: optional MLflow tracking over REST.
- :mod:`~simulator.bundle`: the trained policy as an inference bundle (``artifact_manifest.json``).
- :mod:`~simulator.runner`: ties them together and writes the job files.
"""

__version__ = "0.2.0"  # the simulator program's own version, written into bundle manifests

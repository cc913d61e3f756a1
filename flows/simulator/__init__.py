"""Reference multi-agent energy-flexibility simulator: the default workload of simulation jobs.

Each building of a CityLearn-format district (load, PV, battery, EV chargers) is
an agent; ``python -m flows.simulator`` runs one experiment under the platform's
simulator contract (see :mod:`flows.simulator.runner`). Modules:

- :mod:`~flows.simulator.config`: the experiment YAML, ``validate_config`` and ``ConfigError``
  (light: the REST API imports it to refuse bad configs).
- :mod:`~flows.simulator.dataset`: read a dataset folder, or make / write the built-in sample.
- :mod:`~flows.simulator.environment`: the vectorised district simulation.
- :mod:`~flows.simulator.agents`: no control, rule-based and Q-learning controllers.
- :mod:`~flows.simulator.metrics`: KPIs and their ratio to the no-control baseline.
- :mod:`~flows.simulator.mlflow_client`: optional MLflow tracking over REST.
- :mod:`~flows.simulator.runner`: ties them together and writes the job files.
"""

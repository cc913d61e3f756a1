# The platform's MLflow tracking server for the production compose (docker-compose.yml): its own
# image, as `make up` gives it its own venv (mlflow's pins clash with Prefect's). docs/mlflow.md.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
ARG MLFLOW_VERSION=3.17.2
RUN python3 -m venv /opt/mlflow && /opt/mlflow/bin/pip install --no-cache-dir "mlflow==${MLFLOW_VERSION}" psycopg2-binary
ENV PATH=/opt/mlflow/bin:$PATH MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false

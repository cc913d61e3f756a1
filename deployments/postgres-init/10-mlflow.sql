-- The MLflow tracking server's database, beside Prefect's (docker-compose.yml; docs/mlflow.md).
CREATE DATABASE mlflow OWNER prefect;

-- Run once by the postgres image on an empty data volume (docker-entrypoint-initdb.d), as the
-- POSTGRES_USER (layerops), after it created the database `layerops` (the prediction log).
-- MLflow's backend store gets a database of its own; `mlflow server` creates its tables.
CREATE DATABASE mlflow;

#!/bin/sh
# One-shot MinIO setup for the compose stack (service s3-init, image minio/mc): the artifact bucket
# `mlflow` and a user `mlflow` that may read and write only that bucket. Safe to run again.
set -eu
mc alias set local http://s3:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"
mc mb --ignore-existing local/mlflow
cat > /tmp/mlflow-bucket.json <<'POLICY'
{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation"], "Resource": ["arn:aws:s3:::mlflow"]},
    {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"], "Resource": ["arn:aws:s3:::mlflow/*"]}
  ]
}
POLICY
mc admin policy create local mlflow-bucket /tmp/mlflow-bucket.json
mc admin user add local "$MLFLOW_S3_ACCESS_KEY" "$MLFLOW_S3_SECRET_KEY"
mc admin policy attach local mlflow-bucket --user "$MLFLOW_S3_ACCESS_KEY" || true  # already attached
echo "bucket mlflow and user $MLFLOW_S3_ACCESS_KEY ready"

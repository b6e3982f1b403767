"""matrix.yaml as validated frozen values, known defects, kinds, MLflow releases."""

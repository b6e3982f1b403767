"""Commands of `mlflow-matrix`: from flags to cells, plans, platform lifecycle."""

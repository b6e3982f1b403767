"""charmed-mlflow-matrix: run the same MLflow scenarios on every platform Charmed MLflow supports.

Kept import-free on purpose: `harness.incell.plugin` is loaded inside each cell's MLflow virtualenv,
which has none of the harness's own dependencies.
"""

__version__ = "0.1.0"

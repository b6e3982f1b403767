"""The pytest plugin that travels into each cell's MLflow virtualenv.

Import-free: the cell env has none of the harness's dependencies."""

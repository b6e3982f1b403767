"""The run engine: cells at once, one cell's phases, the pytest child, verdicts, envs."""

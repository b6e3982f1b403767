"""Low-level helpers every layer uses: processes, waits, errors, redaction, state, Kubernetes.

Import-free: `endpoint` and `errors` are loaded inside cell envs too."""

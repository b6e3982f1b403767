"""kubectl command lines (the binary is optional: callers fall back to the API)."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path


def kubectl_argv(kubeconfig: Path | None, context: str | None, namespace: str | None,
                 args: Sequence[str]) -> list[str]:
    """`kubectl [--kubeconfig K] [--context C] [-n NS] ARGS`; no namespace: cluster-wide."""
    binary = shutil.which("kubectl") or "kubectl"
    argv = [binary]
    if kubeconfig is not None:
        argv += ["--kubeconfig", str(kubeconfig)]
    if context:
        argv += ["--context", context]
    if namespace:
        argv += ["-n", namespace]
    return [*argv, *args]

"""Platform options given on the command line, handed to provisioners as `RunContext.options`."""

from __future__ import annotations

import argparse
from typing import Any

PLATFORM_OPTIONS = ("tracking_uri", "s3_endpoint_url", "artifact_bucket", "artifact_mode",
                    "kubeconfig", "controller")


def provisioner_options(args: argparse.Namespace) -> dict[str, Any]:
    return {name: getattr(args, name) for name in PLATFORM_OPTIONS
            if getattr(args, name, None) is not None}

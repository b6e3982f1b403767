"""Kubernetes platforms: a cluster per provider; Juju deploys the bundle onto it."""

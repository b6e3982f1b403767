"""Kubernetes platforms: a cluster from a provider, Charmed MLflow on it through Juju.

`base.KubernetesProvisioner` owns the Juju contract (plan, up, down, collect, the Juju release
before the cluster goes, janitor release, the cell's deployment); a provider module supplies only
its cluster verbs (see docs/platforms.md, "Adding a provisioner").
"""

"""Checks of this machine before a snap Kubernetes (MicroK8s, Canonical Kubernetes) goes on it.

Each check fails before anything is installed, with the remedy the Canonical sources give:

- inotify limits: Charmed Kubeflow's MicroK8s tutorial raises `fs.inotify.max_user_instances`
  to 1280 and `max_user_watches` to 655360 ("Large MicroK8s deployments sometimes exceed the
  default inotify limits"; Ubuntu's default is 128 instances).
- free disk where the snap keeps its images and volumes (Canonical Kubernetes reserves a PVC's
  full size on disk; the bundle's images and mysql-k8s's volume need several GB per cell).
- `/run/containerd` (Canonical Kubernetes only): `k8s bootstrap` refuses when another containerd
  owns that path (k8s-snap#1192, #1574, #1612), as on GitHub's runners; Canonical's own CI
  removes Docker's containerd first (charmed-kubeflow-solutions deploy-to-k8s.yaml:
  `sudo apt-get remove -y docker.io containerd` then `sudo rm -rf /run/containerd`).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from harness.system.errors import ConfigError

INOTIFY = Path("/proc/sys/fs/inotify")
GIB = 1024 ** 3


@dataclass(frozen=True)
class HostLimits:
    """What a platform asks of this machine (0 turns a check off)."""

    min_inotify_instances: int = 1280
    min_inotify_watches: int = 655360
    min_free_disk_gb: int = 20
    disk_path: str = "/var/snap"
    inotify_dir: str = str(INOTIFY)


def check_inotify(limits: HostLimits) -> None:
    wanted = {"max_user_instances": limits.min_inotify_instances,
              "max_user_watches": limits.min_inotify_watches}
    low = []
    for name, minimum in wanted.items():
        if not minimum:
            continue
        try:
            value = int((Path(limits.inotify_dir) / name).read_text().strip())
        except (OSError, ValueError):
            continue   # not Linux, or not readable: nothing to judge
        if value < minimum:
            low.append((name, value, minimum))
    if low:
        have = ", ".join(f"fs.inotify.{n} is {v} (needs {m})" for n, v, m in low)
        fix = "; ".join(f"sudo sysctl fs.inotify.{n}={m}" for n, _, m in low)
        raise ConfigError(f"this machine's inotify limits are too low for a Kubernetes with "
                          f"several Juju models: {have}",
                          hint=f"{fix} (Charmed Kubeflow's MicroK8s tutorial; add them to "
                               "/etc/sysctl.conf to keep them), or set min_inotify_instances / "
                               "min_inotify_watches: 0 for this platform in matrix.yaml")


def check_free_disk(limits: HostLimits) -> None:
    if not limits.min_free_disk_gb:
        return
    path = Path(limits.disk_path)
    while not path.exists() and path != path.parent:
        path = path.parent
    free = shutil.disk_usage(path).free / GIB
    if free < limits.min_free_disk_gb:
        raise ConfigError(f"{free:.1f} GiB free under {limits.disk_path}; a snap Kubernetes with "
                          f"the bundle's images and volumes needs about {limits.min_free_disk_gb} "
                          "GiB",
                          hint="free some disk, or set min_free_disk_gb for this platform in "
                               "matrix.yaml (0 turns the check off)")


def check_containerd(path: str, *, bootstrapped: bool) -> None:
    """Another containerd's `/run/containerd` makes `k8s bootstrap` fail; Canonical K8s's own
    (an already bootstrapped node) is fine."""
    if bootstrapped or not Path(path).exists():
        return
    raise ConfigError(f"{path} exists and this node is not a Canonical Kubernetes node yet: "
                      "`k8s bootstrap` refuses to start next to another containerd (k8s-snap#1192,"
                      " #1574)",
                      hint="remove the other containerd first, as Canonical's CI does: "
                           "`sudo apt-get remove -y docker.io containerd && sudo rm -rf "
                           f"{path}` (on a GitHub runner); or use the microk8s platform")

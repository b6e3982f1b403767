"""`local`: each step of a Charmed MLflow guide as its process-level equivalent.

| guide step                                  | local equivalent                                       |
|---------------------------------------------|--------------------------------------------------------|
| juju refresh mlflow-minio                   | S3 server restart on the same data, keys and ports     |
| juju refresh mlflow-server                  | stop, swap the env, start with the target charm's      |
|                                             | command line (migrating first only if that charm does) |
| juju remove-relation …relational-db …       | stop the server (the charm is blocked without a store);|
|                                             | MariaDB: drop the relation's user (mysql-k8s does)     |
| juju integrate …database …relational-db     | a new user with the privileges a new relation gets; the|
|                                             | migration the charm runs, as that user; start          |
| juju scale-application mlflow-mysql N       | nothing: one store process, no primary to keep serving |
| juju run mlflow-mysql/leader create-backup  | a dump of the store (SQLite backup API / mariadb-dump) |
| juju run mlflow-mysql/leader restore        | the dump loaded into the store; the server restarted   |
|                                             | as the charm starts it                                 |
| rclone sync MinIO ↔ backup S3               | every object of the bucket copied (boto3) ↔ a backup   |
|                                             | directory outside the deployment                       |

`plan` prints this mapping per step (`step_plan`); the runner calls `run_step`.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING

from harness.system.buckets import sync_bucket
from harness.system.errors import InfrastructureError
from harness.system.procs import run
from harness.system.redact import redact

if TYPE_CHECKING:
    from harness.config.guides import Guide, GuideStep
    from harness.config.model import Channel
    from harness.system.endpoint import Endpoint
    from provisioners.local import LocalDeployment

BACKUP_DUMP = {"sqlite": "mlflow.db", "mysql": "mlflow.sql"}


def step_plan(guide: Guide, step: GuideStep, target: Channel, database: str) -> str:
    """What `run_step` does for one step, in words, for `mlflow-matrix plan`."""
    app = guide.bundle_app(step.app) if step.app else ""
    if step.do == "refresh" and app == "mlflow-minio":
        return "restart the S3 server (SeaweedFS) on the same data dir, keys and ports"
    if step.do == "refresh":
        return (f"stop the MLflow server, swap to the MLflow {target.mlflow_version} env; if the "
                "database relation exists: " + _migration(target)
                + f", start the {target.mlflow_version} server with the charm's command line "
                "(else it stays stopped, as the charm stays blocked)")
    if step.do == "remove-relation":
        user = ("; drop the MariaDB user of the relation (mysql-k8s deletes the relation's "
                "scoped user, not the database)" if database == "mysql" else "")
        return f"stop the MLflow server (the charm is blocked without its store){user}"
    if step.do == "integrate":
        user = ("create a new MariaDB user with ALL PRIVILEGES ON mlflow.* (what a new relation "
                "grants), " if database == "mysql" else "")
        return f"{user}{_migration(target)} with those credentials, start the server on them"
    if step.do == "scale":
        return "nothing to do: one store process, no primary that a backup would take away"
    if step.do == "run-action" and step.action == "create-backup":
        tool = "sqlite3 backup API" if database == "sqlite" else "mariadb-dump --single-transaction"
        return f"dump the store with the {tool} into the cell's backup directory"
    if step.do == "run-action" and step.action == "restore":
        return ("stop the MLflow server, load the dump into the store, start the server as the "
                f"charm starts it ({_migration(target)})")
    if step.do == "sync-bucket":
        way = ("bucket → backup directory" if step.direction == "backup"
               else "backup directory → bucket")
        return f"copy every object (boto3, size-only like rclone --size-only): {way}"
    return f"no local equivalent of `{step.text}`"


def _migration(target: Channel) -> str:
    return ("`mlflow db upgrade <store>` (the target charm migrates the database itself)"
            if target.migrates_db_on_upgrade else
            "no `mlflow db upgrade` (the target charm runs none: "
            f"matrix.yaml channels.{target.name}.migrates_db_on_upgrade)")


def run_step(deployment: LocalDeployment, guide: Guide, step: GuideStep,
             target: Channel) -> Endpoint | None:
    """Run one guide step on a local deployment; the server's endpoint when it runs after the
    step, None when the step leaves it stopped (as the charm is blocked)."""
    app = guide.bundle_app(step.app) if step.app else ""
    if step.do == "refresh" and app == "mlflow-minio":
        deployment.restart_s3()
        return deployment.current_endpoint()
    if step.do == "refresh":
        deployment.stop_server()
        deployment.channel = target
        return deployment.start_as_charm() if deployment.related else None
    if step.do == "remove-relation":
        deployment.stop_server()
        deployment.related = False
        deployment.db_store().drop_relation_user()
        return None
    if step.do == "integrate":
        deployment.db_store().new_relation_user()
        deployment.related = True
        return deployment.start_as_charm()
    if step.do == "scale":
        return deployment.current_endpoint()
    if step.do == "run-action" and step.action == "create-backup":
        dump_store(deployment, backup_dir(deployment) / BACKUP_DUMP[deployment.settings.database])
        return deployment.current_endpoint()
    if step.do == "run-action" and step.action == "restore":
        deployment.stop_server()
        load_store(deployment, backup_dir(deployment) / BACKUP_DUMP[deployment.settings.database])
        return deployment.start_as_charm()
    if step.do == "sync-bucket":
        s3 = deployment.s3
        assert s3 is not None
        sync_bucket(s3.url, s3.credentials, deployment.settings.bucket,
                    backup_dir(deployment) / "bucket", to_folder=step.direction == "backup")
        return deployment.current_endpoint()
    raise InfrastructureError(f"`local` has no equivalent of guide step {step.id!r} "
                              f"({step.text})")


def backup_dir(deployment: LocalDeployment) -> Path:
    """The backup's home: outside the deployment's work dir, so destroying the deployment
    leaves it; recorded in the run's state file and removed at teardown."""
    if deployment.backup is None:
        path = Path(tempfile.mkdtemp(prefix=f"mlflow-matrix-{deployment.context.run_id}-backup-"))
        deployment.backup = (path, deployment.context.state.add("dir", path=str(path)))
    return deployment.backup[0]


def release_backup(deployment: LocalDeployment) -> None:
    if deployment.backup is not None:
        path, rid = deployment.backup
        shutil.rmtree(path, ignore_errors=True)
        deployment.context.state.release(rid)
        deployment.backup = None


def dump_store(deployment: LocalDeployment, dest: Path) -> None:
    store = deployment.db_store()
    dest.parent.mkdir(parents=True, exist_ok=True)
    if deployment.settings.database == "sqlite":
        with closing(sqlite3.connect(store.root / "mlflow.db")) as src, \
                closing(sqlite3.connect(dest)) as dst:
            src.backup(dst)
        return
    proc = run([*store.client_argv("mariadb-dump"), "--single-transaction", "--add-drop-database",
                "--databases", "mlflow"], timeout=deployment.timeout, check=False)
    if proc.returncode != 0:
        raise InfrastructureError("mariadb-dump failed:\n  " + redact(proc.stderr).strip())
    dest.write_text(proc.stdout, encoding="utf-8")


def load_store(deployment: LocalDeployment, dump: Path) -> None:
    if not dump.is_file():
        raise InfrastructureError(f"no database backup at {dump}: the backup step did not run")
    store = deployment.db_store()
    if deployment.settings.database == "sqlite":
        target = store.root / "mlflow.db"
        for stale in (target, target.with_name("mlflow.db-wal"), target.with_name("mlflow.db-shm")):
            stale.unlink(missing_ok=True)
        with closing(sqlite3.connect(dump)) as src, closing(sqlite3.connect(target)) as dst:
            src.backup(dst)
        return
    proc = run(store.client_argv("mariadb"), timeout=deployment.timeout, check=False,
               input=dump.read_text(encoding="utf-8"))
    if proc.returncode != 0:
        raise InfrastructureError("loading the database dump failed:\n  "
                                  + redact(proc.stderr).strip())
    store.grant_relation_user()

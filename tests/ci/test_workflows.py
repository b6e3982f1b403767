"""The workflows keep their promises: a job for every platform (through the generator), the
README's command in each, an always-run teardown and a timeout in every cloud job, least
privilege, pinned actions, no secret echoed.

Each promise is a check over the parsed workflow (`nightly_problems`, `pr_problems`); the real
workflows must have no problem, and every mutation below (a job or step removed, a guard
dropped) must be caught: that is what makes these tests able to fail.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

import pytest

from harness.commands.ci_matrix import list_data, select

SHA_PIN = re.compile(r"^\s*(?:-\s*)?uses:\s*([\w.-]+/[\w./-]+)@([0-9a-f]{40})\s+#\s*v\d+(\.\d+)*\s*$")
AUTH_ACTION = {"aws": "aws-actions/configure-aws-credentials", "azure": "azure/login",
               "gcp": "google-github-actions/auth"}
README_COMMAND = "tox -e matrix -- --platform"
PRINTS_ENV = re.compile(r"(^|[;&|]\s*|\s)(env|printenv|set\s+-x|export\s+-p)(\s|$)", re.M)
OIDC_JOBS = {"cloud", "janitor", "deploy"}


def _always(condition: Any) -> bool:
    return "always()" in str(condition or "")


def _steps(job: dict) -> list[dict]:
    return job.get("steps") or []


def _run_step(job: dict) -> tuple[int, dict] | None:
    for i, step in enumerate(_steps(job)):
        if README_COMMAND in str(step.get("run", "")):
            return i, step
    return None


def _platform_job_problems(name: str, job: dict | None, output: str, *, cloud: bool) -> list[str]:
    if job is None:
        return [f"no `{name}` job: platforms of the `{output}` list would get no job"]
    problems = []
    include = str(job.get("strategy", {}).get("matrix", {}).get("include", ""))
    if f"needs.generate.outputs.{output}" not in include:
        problems.append(f"{name}: its matrix is not the generator's `{output}` list")
    if str(job.get("timeout-minutes", "")) != "${{ matrix.timeout_minutes }}":
        problems.append(f"{name}: timeout-minutes is not the platform's (matrix.timeout_minutes)")
    if job.get("env", {}).get("PLATFORM") != "${{ matrix.platform }}":
        problems.append(f"{name}: PLATFORM is not the matrix entry's platform")
    found = _run_step(job)
    if found is None:
        return [*problems, f"{name}: no step runs the README's command `{README_COMMAND} …`"]
    index, run = found
    script = str(run["run"])
    for part in ('--platform "$PLATFORM"', '--run-id "$RUN_ID"', '--reports-dir "$REPORTS"'):
        if part not in script:
            problems.append(f"{name}: the matrix step lacks {part}")
    if run.get("env", {}).get("RUN_ID") != "${{ steps.run.outputs.id }}":
        problems.append(f"{name}: the matrix step's run id is not the one known up front")
    if "timeout-minutes" not in run:
        problems.append(f"{name}: the matrix step has no timeout of its own (teardown needs time)")
    later = _steps(job)[index + 1:]
    uploads = [s for s in later if "actions/upload-artifact" in str(s.get("uses", ""))
               and str(s.get("with", {}).get("path", "")).rstrip("/") == "${{ env.REPORTS }}"]
    if not any(_always(s.get("if")) for s in uploads):
        problems.append(f"{name}: reports are not uploaded by an always-run step")
    teardowns = [s for s in later if "mlflow-matrix down --run-id" in str(s.get("run", ""))]
    if not teardowns:
        problems.append(f"{name}: no teardown step (`mlflow-matrix down --run-id …`) after the run")
    for step in teardowns:
        if not _always(step.get("if")):
            problems.append(f"{name}: the teardown step does not run always()")
        if step.get("env", {}).get("RUN_ID") != run.get("env", {}).get("RUN_ID"):
            problems.append(f"{name}: the teardown releases another run id than the run used")
        if cloud and "timeout-minutes" not in step:
            problems.append(f"{name}: the teardown step has no timeout")
    perms = job.get("permissions")
    if perms is None:
        problems.append(f"{name}: no job permissions (inherits the default token's)")
    elif cloud and perms.get("id-token") != "write":
        problems.append(f"{name}: no `id-token: write` for the OIDC login")
    if cloud:
        concurrency = job.get("concurrency") or {}
        if "matrix.cloud" not in str(concurrency.get("group", "")):
            problems.append(f"{name}: no concurrency group per cloud")
        if concurrency.get("cancel-in-progress") is not False:
            problems.append(f"{name}: a queued night could cancel a running cloud job "
                            "(cancel-in-progress must be false)")
        uses = " ".join(str(s.get("uses", "")) for s in _steps(job))
        for cloud_name in sorted(AUTH_ACTION):
            action = AUTH_ACTION[cloud_name]
            step = next((s for s in _steps(job) if action in str(s.get("uses", ""))), None)
            if step is None:
                problems.append(f"{name}: no {action} step for {cloud_name}")
            elif f"matrix.cloud == '{cloud_name}'" not in str(step.get("if", "")):
                problems.append(f"{name}: {action} does not run only for {cloud_name} jobs")
            elif _steps(job).index(step) > index:
                problems.append(f"{name}: {action} runs after the matrix step")
        if "${{ secrets." in uses:
            problems.append(f"{name}: stored secrets in a cloud job (use OIDC)")
    return problems


def nightly_problems(wf: dict) -> list[str]:
    problems = []
    on = wf.get("on") or {}
    if "schedule" not in on:
        problems.append("no schedule")
    inputs = (on.get("workflow_dispatch") or {}).get("inputs") or {}
    for name in ("platforms", "channels", "upgrades"):
        if name not in inputs:
            problems.append(f"workflow_dispatch has no `{name}` input")
    if wf.get("permissions") != {}:
        problems.append("the workflow-level token is not `permissions: {}`")
    jobs = wf.get("jobs") or {}
    generate = jobs.get("generate")
    if generate is None:
        problems.append("no `generate` job: the job list would drift from matrix.yaml")
    else:
        scripts = " ".join(str(s.get("run", "")) for s in _steps(generate))
        if "mlflow-matrix list --json" not in scripts or "harness.commands.ci_matrix" not in scripts:
            problems.append("generate does not derive the jobs from `mlflow-matrix list --json`")
        for output in ("jobs", "cloud_jobs", "clouds", "skipped"):
            if f"steps.select.outputs.{output}" not in str(generate.get("outputs", {}).get(output)):
                problems.append(f"generate does not output `{output}`")
    problems += _platform_job_problems("platform", jobs.get("platform"), "jobs", cloud=False)
    problems += _platform_job_problems("cloud", jobs.get("cloud"), "cloud_jobs", cloud=True)
    janitor = jobs.get("janitor")
    if janitor is None:
        problems.append("no janitor job")
    else:
        if not _always(janitor.get("if")):
            problems.append("janitor: does not run always() (a cancelled night would leak)")
        if "cloud" not in (janitor.get("needs") or []):
            problems.append("janitor: does not wait for the cloud jobs")
        if "needs.generate.outputs.clouds" not in str(janitor.get("strategy", {}).get("matrix")):
            problems.append("janitor: not one job per cloud kind of the generator")
        scripts = " ".join(str(s.get("run", "")) for s in _steps(janitor))
        if not re.search(r"mlflow-matrix janitor --cloud \S+ --older-than \S+", scripts):
            problems.append("janitor: never runs `mlflow-matrix janitor --cloud … --older-than …`")
        if "mlflow-matrix down --run-id" not in scripts:
            problems.append("janitor: does not release what this night's cloud jobs recorded")
    report = jobs.get("report")
    if report is None:
        problems.append("no merged report job")
    else:
        if not _always(report.get("if")) or not {"platform", "cloud"} <= set(report.get("needs", [])):
            problems.append("report: must run always(), after every platform job")
        scripts = " ".join(str(s.get("run", "")) for s in _steps(report))
        for part in ("--merge", "--previous", "GITHUB_STEP_SUMMARY", "matrix.md"):
            if part not in scripts:
                problems.append(f"report: no {part}")
        if not any("upload-pages-artifact" in str(s.get("uses", "")) for s in _steps(report)):
            problems.append("report: nothing is published to GitHub Pages")
    deploy = jobs.get("deploy")
    if deploy is None or (deploy.get("permissions") or {}).get("pages") != "write":
        problems.append("no Pages deploy job with `pages: write`")
    problems += common_problems(wf)
    return problems


def common_problems(wf: dict) -> list[str]:
    """Least privilege and no secret on a command line, for any workflow."""
    problems = []
    for name, job in (wf.get("jobs") or {}).items():
        perms = job.get("permissions")
        if perms is None:
            problems.append(f"{name}: no job-level permissions")
        elif isinstance(perms, dict):
            if perms.get("id-token") == "write" and name not in OIDC_JOBS:
                problems.append(f"{name}: id-token: write where no OIDC login happens")
            if any(v == "write" for k, v in perms.items() if k not in ("id-token", "pages")):
                problems.append(f"{name}: write permission {perms}")
        elif perms in ("write-all", "read-all"):
            problems.append(f"{name}: permissions {perms}")
        for step in _steps(job):
            script = str(step.get("run", ""))
            label = step.get("name") or step.get("uses") or script[:30]
            if "${{" in script:
                problems.append(f"{name}/{label}: an expression inside a script "
                                "(pass it through env:, never into the command line)")
            env = " ".join(str(v) for v in (step.get("env") or {}).values())
            if "secrets." in env and PRINTS_ENV.search(script):
                problems.append(f"{name}/{label}: prints the environment holding a secret")
            if re.search(r"(echo|printf)[^\n]*\$\{?\w*(SECRET|TOKEN|PASSWORD|KEY)\w*", script,
                         re.IGNORECASE):
                problems.append(f"{name}/{label}: echoes a secret-named variable")
    return problems


def pr_problems(wf: dict) -> list[str]:
    problems = []
    on = wf.get("on") or {}
    if "pull_request" not in on or "pull_request_target" in on:
        problems.append("must run on pull_request (never pull_request_target)")
    if wf.get("permissions") != {}:
        problems.append("the workflow-level token is not `permissions: {}`")
    scripts = {name: " ".join(str(s.get("run", "")) for s in _steps(job))
               for name, job in (wf.get("jobs") or {}).items()}
    everything = " ".join(scripts.values())
    for command in ("tox -e lint", "workflows", "tox -e unit", "tox -e matrix", "tox -e report"):
        if command not in everything:
            problems.append(f"no job runs `{command}`")
    for name, job in (wf.get("jobs") or {}).items():
        if "tox -e matrix" in scripts[name]:
            uploads = [s for s in _steps(job) if "upload-artifact" in str(s.get("uses", ""))]
            if not any(_always(s.get("if")) for s in uploads):
                problems.append(f"{name}: reports are not uploaded by an always-run step")
        if (job.get("permissions") or {}).get("id-token"):
            problems.append(f"{name}: a pull request needs no id-token")
    return [*problems, *common_problems(wf)]


# ---------------------------------------------------------------- the real workflows


def test_the_nightly_workflow_keeps_every_promise(nightly):
    assert nightly_problems(nightly) == []


def test_the_pr_workflow_keeps_every_promise(pr):
    assert pr_problems(pr) == []


def test_every_platform_of_matrix_yaml_has_a_job_through_the_generator(nightly, cloud_matrix):
    """The scheduled night (no inputs): each platform lands in the job list the workflow's
    `platform` or `cloud` job expands, or is named as not run with its reason."""
    result = select(list_data(cloud_matrix))
    jobs = nightly["jobs"]
    expands = {"jobs": jobs["platform"], "cloud_jobs": jobs["cloud"]}
    covered = {}
    for output, job in expands.items():
        assert f"fromJSON(needs.generate.outputs.{output})" in job["strategy"]["matrix"]["include"]
        for entry in result[output]:
            covered[entry["platform"]] = output
    skipped = {s["platform"]: s["reason"] for s in result["skipped"]}
    for name, platform in cloud_matrix.platforms.items():
        assert name in covered or skipped.get(name), f"{name} has no job and no reason"
        if platform.traits.ci.cloud:
            assert covered[name] == "cloud_jobs", f"{name} must run with its cloud's credentials"
    assert {"local", "local-mysql", "local-proxied", "microk8s-1.32", "canonical-k8s-1.32",
            "eks-1.32", "aks-1.32", "gke-1.32"} <= set(covered)


def test_every_job_runs_the_readmes_command(nightly, pr):
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert "tox -e matrix -- " in readme and "--platform NAME" in readme
    for name in ("platform", "cloud"):
        _, step = _run_step(nightly["jobs"][name])
        assert step["run"].strip().splitlines()[-1].startswith(
            'tox -e matrix -- --platform "$PLATFORM" --run-id "$RUN_ID" --reports-dir "$REPORTS"')
    assert any(str(s.get("run", "")).startswith('tox -e matrix -- --run-id "$RUN_ID" --reports-dir')
               for s in pr["jobs"]["matrix"]["steps"])


def test_every_action_is_pinned_to_a_commit_with_its_release_named(workflow_texts):
    seen = {}
    for name, text in workflow_texts.items():
        for line in text.splitlines():
            if re.match(r"^\s*(-\s*)?uses:", line):
                match = SHA_PIN.match(line)
                assert match, f"{name}: not pinned to a full commit SHA with a `# vX` comment: {line}"
                seen.setdefault(match.group(1), set()).add(match.group(2))
    assert all(len(shas) == 1 for shas in seen.values()), f"one SHA per action: {seen}"
    assert set(AUTH_ACTION.values()) <= set(seen)


def test_no_secret_reaches_a_command_line(workflow_texts):
    for name, text in workflow_texts.items():
        assert "secrets." not in text, f"{name}: stored secrets; the workflows use OIDC only"
        assert "set -x" not in text and "printenv" not in text


# ---------------------------------------------------------------- the checks can fail


def _drop_job(name: str) -> Callable[[dict], None]:
    return lambda wf: wf["jobs"].pop(name)


def _drop_step(job: str, needle: str) -> Callable[[dict], None]:
    def change(wf: dict) -> None:
        steps = wf["jobs"][job]["steps"]
        wf["jobs"][job]["steps"] = [s for s in steps if needle not in str(s.get("run", ""))
                                    + str(s.get("uses", "")) + str(s.get("name", ""))]
        assert len(wf["jobs"][job]["steps"]) < len(steps), needle
    return change


def _edit_step(job: str, needle: str, key: str, value: Any) -> Callable[[dict], None]:
    def change(wf: dict) -> None:
        step = next(s for s in wf["jobs"][job]["steps"] if needle in str(s.get("run", "")))
        if value is None:
            step.pop(key)
        else:
            step[key] = value
    return change


def _set(path: list[str], value: Any) -> Callable[[dict], None]:
    def change(wf: dict) -> None:
        target = wf
        for key in path[:-1]:
            target = target[key]
        if value is None:
            target.pop(path[-1])
        else:
            target[path[-1]] = value
    return change


def _add_step(job: str, step: dict) -> Callable[[dict], None]:
    return lambda wf: wf["jobs"][job]["steps"].append(step)


MUTATIONS = {
    "cloud job removed": (_drop_job("cloud"), "no `cloud` job"),
    "platform job removed": (_drop_job("platform"), "no `platform` job"),
    "generator removed": (_drop_job("generate"), "no `generate` job"),
    "janitor removed": (_drop_job("janitor"), "no janitor job"),
    "report removed": (_drop_job("report"), "no merged report job"),
    "cloud teardown removed": (_drop_step("cloud", "mlflow-matrix down"), "cloud: no teardown"),
    "platform teardown removed": (_drop_step("platform", "mlflow-matrix down"),
                                  "platform: no teardown"),
    "cloud matrix step removed": (_drop_step("cloud", README_COMMAND), "README's command"),
    "teardown not always": (_edit_step("cloud", "mlflow-matrix down", "if", "success()"),
                            "does not run always()"),
    "teardown without timeout": (_edit_step("cloud", "mlflow-matrix down", "timeout-minutes", None),
                                 "teardown step has no timeout"),
    "job timeout removed": (_set(["jobs", "cloud", "timeout-minutes"], None),
                            "timeout-minutes is not the platform's"),
    "upload removed": (_drop_step("cloud", "Upload reports"), "not uploaded"),
    "gcp login removed": (_drop_step("cloud", "google-github-actions/auth"),
                          "no google-github-actions/auth step"),
    "cloud concurrency cancels": (_set(["jobs", "cloud", "concurrency", "cancel-in-progress"], True),
                                  "cancel-in-progress must be false"),
    "id-token on a local job": (_set(["jobs", "platform", "permissions", "id-token"], "write"),
                                "platform: id-token: write where no OIDC login happens"),
    "secret echoed": (_add_step("platform", {"run": "echo ${{ secrets.AWS_KEY }}"}),
                      "an expression inside a script"),
    "secret env printed": (_add_step("platform", {"env": {"K": "${{ secrets.K }}"}, "run": "env"}),
                           "prints the environment holding a secret"),
    "token echoed": (_add_step("platform", {"run": 'echo "$GITHUB_TOKEN"'}),
                     "echoes a secret-named variable"),
    "janitor not always": (_set(["jobs", "janitor", "if"], "success()"), "janitor: does not run"),
    "no dispatch inputs": (_set(["on", "workflow_dispatch"], None), "no `platforms` input"),
}


@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_the_nightly_checks_catch(nightly, mutation):
    change, expected = MUTATIONS[mutation]
    broken = copy.deepcopy(nightly)
    change(broken)
    problems = nightly_problems(broken)
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize(("change", "expected"), [
    (_drop_job("matrix"), "no job runs `tox -e matrix`"),
    (_drop_job("lint"), "no job runs `tox -e lint`"),
    (_drop_step("matrix", "Upload reports"), "matrix: reports are not uploaded"),
    (_set(["on"], {"pull_request_target": None}), "never pull_request_target"),
])
def test_the_pr_checks_catch(pr, change, expected):
    change(pr)
    assert any(expected in p for p in pr_problems(pr)), pr_problems(pr)

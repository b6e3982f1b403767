"""Prompt registry (2.21+): prompts, their versions and aliases, as a user drives them.

A prompt is a registered model tagged `mlflow.prompt.is_prompt` whose versions carry a template;
the client parses `{{variables}}` out of it. Every version's template, variables and commit
message must read back exactly, by version and by alias; search_prompts (3.0+) is walked past its
first page. Names are unique per test (prompts are server-wide, not per experiment). On releases
without the API the tests are not applicable (scenarios/_rules.py).
"""

from __future__ import annotations

import contextlib

import pytest
from _entities import load_prompt
from _helpers import assert_walk, expect_page_refusals, require_api, walk_pages
from packaging.version import Version

PAGE = 2
WRITTEN = 5
TEMPLATES = ("Summarise {{text}} in {{words}} words.",
             "Résume {{ text }} en {{words}} mots, ton {{tone}} ✓")
VARIABLES = ({"text", "words"}, {"text", "words", "tone"})


@pytest.fixture
def version(endpoint) -> Version:
    version = Version(endpoint.mlflow_version)
    require_api("prompt_registry", version)
    return version


@pytest.fixture
def prompts(mlflow_client, version):
    """Names registered by the test; each is deleted afterwards where the release allows."""
    names: list[str] = []
    yield names
    for name in names:
        delete_prompt(mlflow_client, name)


def delete_prompt(client, name: str) -> None:
    """Delete every version, then the prompt (3.x); 2.2x deletes versions only."""
    for number in (1, 2, 3):
        with contextlib.suppress(Exception):
            if hasattr(client, "delete_prompt_version"):
                client.delete_prompt_version(name, str(number))
            else:
                client.delete_prompt(name, number)
    if hasattr(client, "delete_prompt_version"):
        with contextlib.suppress(Exception):
            client.delete_prompt(name)


def register_two_versions(client, name: str) -> list:
    return [client.register_prompt(name, template, commit_message=f"version {i}")
            for i, template in enumerate(TEMPLATES, start=1)]


def view(prompt) -> dict:
    return {"name": prompt.name, "version": str(prompt.version), "template": prompt.template,
            "variables": set(prompt.variables), "commit_message": prompt.commit_message}


def test_prompt_versions_round_trip(mlflow_client, unique_name, prompts):
    name = unique_name()
    prompts.append(name)
    written = register_two_versions(mlflow_client, name)
    assert [str(p.version) for p in written] == ["1", "2"]
    for number, (template, variables) in enumerate(zip(TEMPLATES, VARIABLES, strict=True), 1):
        got = view(load_prompt(mlflow_client, f"prompts:/{name}/{number}"))
        assert got == {"name": name, "version": str(number), "template": template,
                       "variables": variables, "commit_message": f"version {number}"}


def test_prompt_aliases_set_move_and_delete(mlflow_client, unique_name, prompts):
    name = unique_name()
    prompts.append(name)
    register_two_versions(mlflow_client, name)
    mlflow_client.set_prompt_alias(name, "production", 1)
    assert str(load_prompt(mlflow_client, f"prompts:/{name}@production").version) == "1"
    mlflow_client.set_prompt_alias(name, "production", 2)
    got = load_prompt(mlflow_client, f"prompts:/{name}@production")
    assert (str(got.version), got.template) == ("2", TEMPLATES[1])
    mlflow_client.delete_prompt_alias(name, "production")
    with pytest.raises(Exception, match=r"(?i)alias|not found|does not exist"):
        load_prompt(mlflow_client, f"prompts:/{name}@production")


def test_prompt_version_links_to_a_run(mlflow_client, unique_name, prompts):
    name = unique_name()
    prompts.append(name)
    second = register_two_versions(mlflow_client, name)[1]
    experiment_id = mlflow_client.create_experiment(unique_name("exp"))
    try:
        run = mlflow_client.create_run(experiment_id)
        link = (getattr(mlflow_client, "link_prompt_version_to_run", None)
                or mlflow_client.log_prompt)
        link(run.info.run_id, second)
        linked = mlflow_client.list_logged_prompts(run.info.run_id)
        assert [(p.name, str(p.version)) for p in linked] == [(name, "2")]
    finally:
        mlflow_client.delete_experiment(experiment_id)


def test_search_prompts_filter_and_pages(mlflow_client, unique_name, prompts, version):
    require_api("search_prompts", version)
    prefix = unique_name()
    wanted = [f"{prefix}-{i}" for i in range(WRITTEN)]
    for name in [*wanted, unique_name("elsewhere")]:
        prompts.append(name)
        mlflow_client.register_prompt(name, TEMPLATES[0])

    def fetch(max_results, token):
        return mlflow_client.search_prompts(filter_string=f"name LIKE '{prefix}-%'",
                                            max_results=max_results, page_token=token)

    assert_walk(walk_pages(fetch, PAGE), wanted, lambda p: p.name, what="search_prompts")
    expect_page_refusals(fetch, "max_results_search_prompts", version)

"""Which REST endpoints of an MLflow release the scenario suites call, from the server's own logs.

The universe is the release's route table (`mlflow.server.handlers.get_endpoints()`, the
`/api/` paths: the REST API a client may call); what was called is every request line in the
MLflow server logs of the given report folders (uvicorn's access log, MLflow 3.3+; a 2.x
gunicorn server logs no requests). Run it with the Python of the release's cached env:

    ~/.cache/mlflow-matrix/envs/mlflow-3.17.2-…/bin/python benchmarks/rest_coverage.py \\
        reports/local/latest-edge [more cell folders …] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

REQUEST = re.compile(r'"(GET|POST|PUT|PATCH|DELETE|HEAD) (/[^ ?"]*)(?:\?[^ "]*)? HTTP/1\.[01]"')


def endpoints() -> dict[tuple[str, str], re.Pattern[str]]:
    """(method, rule) -> a regex for request paths, for every /api/ route of this release."""
    from mlflow.server.handlers import get_endpoints

    table = {}
    for rule, _handler, methods in get_endpoints():
        if "/api/" not in rule or "/ajax-api/" in rule:
            continue
        pattern = re.sub(r"<path:[^>]+>", ".+", re.escape(rule).replace(r"\<", "<").replace(r"\>", ">"))
        pattern = re.sub(r"<[^>]+>", "[^/]+", pattern)
        for method in methods:
            table[(method, rule)] = re.compile(f"^{pattern}$")
    return table


def called(folders: list[Path]) -> set[tuple[str, str]]:
    """(method, path) of every request the MLflow servers of these cells logged."""
    seen = set()
    for folder in folders:
        for log in sorted(folder.rglob("mlflow-server-*.log")):
            for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
                match = REQUEST.search(line)
                if match:
                    seen.add((match.group(1), match.group(2)))
    return seen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="cell report folders")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    import mlflow

    table = endpoints()
    requests = called(args.folders)
    hit = sorted(key for key, rx in table.items()
                 if any(m == key[0] and rx.match(p) for m, p in requests))
    result = {"mlflow": mlflow.__version__, "endpoints": len(table), "called": len(hit),
              "called_endpoints": [" ".join(k) for k in hit],
              "not_called": [" ".join(k) for k in sorted(set(table) - set(hit))]}
    print(f"MLflow {result['mlflow']}: the suites call {result['called']} of "
          f"{result['endpoints']} REST endpoints (method + /api/ route)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

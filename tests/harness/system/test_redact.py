from __future__ import annotations

from harness.system.endpoint import Credentials, Endpoint
from harness.system.redact import MASK, redact, redact_tree, register_secret


def test_registered_values_and_secret_shapes_are_masked():
    register_secret("s3cr3t-value-123")
    text = redact("key=s3cr3t-value-123 url=mysql+pymysql://mlflow:pw0rd@127.0.0.1:3306/mlflow "
                  "AWS_SECRET_ACCESS_KEY=abcdEFGH password: hunter22 "
                  "client-key-data: LS0tLS1CRUdJTg== Authorization: Bearer tok.en.value")
    for secret in ("s3cr3t-value-123", "pw0rd", "abcdEFGH", "hunter22", "LS0tLS1CRUdJTg==",
                   "tok.en.value"):
        assert secret not in text
    assert text.count(MASK) >= 6
    assert "mysql+pymysql://mlflow:***@127.0.0.1:3306/mlflow" in text


def test_plain_text_is_untouched():
    text = "experiment 'mm-test' created; metric loss=0.5 at step 3"
    assert redact(text) == text


def test_redact_tree_rewrites_only_files_with_secrets(tmp_path):
    register_secret("tree-secret-987")
    (tmp_path / "a.txt").write_text("has tree-secret-987 inside")
    (tmp_path / "b.txt").write_text("clean")
    (tmp_path / "c.bin").write_bytes(b"\0\1tree-secret-987")
    assert redact_tree(tmp_path) == 1
    assert "tree-secret-987" not in (tmp_path / "a.txt").read_text()


def test_endpoint_never_shows_secret_key():
    endpoint = Endpoint("http://x", "2.22.0", "http://s3", "mlflow", Credentials("AK", "SK-hidden"))
    assert "SK-hidden" not in repr(endpoint)
    assert "SK-hidden" not in endpoint.public_json()
    assert endpoint.child_env()["AWS_SECRET_ACCESS_KEY"] == "SK-hidden"
    assert Endpoint.from_env(endpoint.child_env()) == endpoint

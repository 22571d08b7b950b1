"""The official AsyncAPI parser (@asyncapi/parser, Node), for tests that validate the project's
AsyncAPI documents. Its pinned version and lock are in tests/node/; the first use installs them
with `npm ci` into .cache/node/<lock digest>/ (ignored by git), later uses reuse that. The
services never need Node: only these tests do, and they skip where `node` or `npm` is missing."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIR = ROOT / "tests" / "node"
CACHE_DIR = ROOT / ".cache" / "node"
FILES = ("package.json", "package-lock.json", "validate_asyncapi.cjs")


def parser_dir() -> Path:
    """Where the pinned parser is installed, installing it first if needed; skips without Node."""
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not found on PATH: the AsyncAPI documents are checked with "
                    "@asyncapi/parser, which needs Node.js 18 or newer (e.g. `apt-get install nodejs npm`)")
    digest = hashlib.sha256(b"".join((PACKAGE_DIR / name).read_bytes() for name in FILES)).hexdigest()[:16]
    target = CACHE_DIR / digest
    if not (target / "node_modules" / "@asyncapi" / "parser").is_dir():
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=CACHE_DIR, prefix="installing-"))
        for name in FILES:
            shutil.copy(PACKAGE_DIR / name, staging / name)
        # --ignore-scripts: nothing of the dependencies runs at install (one would phone home).
        result = subprocess.run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
                                cwd=staging, capture_output=True, text=True, timeout=300,
                                env={**os.environ, "SCARF_ANALYTICS": "false"})
        if result.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            raise RuntimeError(f"npm ci of tests/node failed:\n{result.stderr[-3000:]}")
        try:
            staging.rename(target)  # atomic: a concurrent run either sees the whole install or none
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)  # another run got there first
    return target


def validate(documents: dict[str, dict], workdir: Path) -> dict[str, list[dict]]:
    """{name: the parser's diagnostics (severity, code, message, path)} for each document."""
    directory = parser_dir()
    paths = {}
    for name, document in documents.items():
        paths[name] = workdir / f"{name}.asyncapi.json"
        paths[name].write_text(json.dumps(document))
    result = subprocess.run(["node", str(directory / "validate_asyncapi.cjs"), *map(str, paths.values())],
                            capture_output=True, text=True, timeout=120, check=True)
    by_path = json.loads(result.stdout)
    return {name: by_path[str(path)] for name, path in paths.items()}

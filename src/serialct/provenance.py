"""What produced a result: ``provenance.json`` beside every scan's outputs and at the results root.

A record holds the software (serialct's version, the git commit of the checkout it runs from
and whether its code differs from that commit, Python and the main libraries), the model and
the normal-lung reference with their sha256, the config (its sha256 and every value) and the
inputs (a scan's manifest, which lists its DICOM files and a digest of their paths, sizes and
times; for the cohort, the tables, statistics and sheets), then ``time`` (UTC) and ``host``.
Two runs of the same code on the same inputs with the same config give the same record except
``time`` and ``host``.
"""

from __future__ import annotations

import hashlib
import json
import platform
import socket
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any, Final

from serialct.atomic import write_text

PACKAGE_ROOT: Final = Path(__file__).resolve().parents[2]  # the checkout (src layout)
CODE_PATHS: Final = ("src", "workflow", "Snakefile")  # what "code_changed" compares
LIBRARIES: Final = ("numpy", "SimpleITK", "pydicom", "pandas", "scipy", "torch", "snakemake")


def sha256(path: Path | str) -> str:
    """Hex sha256 of a file's bytes."""
    with Path(path).open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _git(*args: str) -> str | None:
    try:
        run = subprocess.run(
            ["git", "-C", str(PACKAGE_ROOT), *args], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return run.stdout.strip() if run.returncode == 0 else None


@cache
def software() -> dict[str, Any]:
    """Versions of serialct (and its commit) and of the libraries that compute results."""
    commit = _git("rev-parse", "HEAD")
    changed = _git("status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS)
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "serialct": metadata.version("serialct"),
        "commit": commit,
        "code_changed": None if commit is None else bool(changed),
        "python": platform.python_version(),
        "libraries": versions,
    }


def config_record(config: dict[str, Any]) -> dict[str, Any]:
    """The config's sha256 (of its canonical JSON: sorted keys) and its values."""
    values = json.loads(json.dumps(dict(config), sort_keys=True, default=str))
    text = json.dumps(values, sort_keys=True, separators=(",", ":"))
    return {"sha256": hashlib.sha256(text.encode()).hexdigest(), "values": values}


def file_record(path: Path | str) -> dict[str, str]:
    return {"path": str(path), "sha256": sha256(path)}


def _made_with(model: Path | str, reference: Path | str, config: dict[str, Any]) -> dict[str, Any]:
    return {
        "software": software(),
        "model": file_record(model),
        "reference_histogram": file_record(reference),
        "config": config_record(config),
    }


def scan_record(
    manifest: Path | str, model: Path | str, reference: Path | str, config: dict[str, Any]
) -> dict[str, Any]:
    """Provenance of one scan's outputs."""
    return {**_made_with(model, reference, config), "inputs": {"manifest": file_record(manifest)}}


def cohort_record(
    inputs: Sequence[Path | str], model: Path | str, reference: Path | str, config: dict[str, Any]
) -> dict[str, Any]:
    """Provenance of the cohort outputs (tables, statistics, figures, report)."""
    files = [file_record(p) for p in sorted(map(str, inputs))]
    return {**_made_with(model, reference, config), "inputs": files}


def write(path: Path | str, record: dict[str, Any]) -> dict[str, Any]:
    """Write ``record`` with ``time`` and ``host`` added; returns what was written."""
    stamped = {
        **record,
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
    }
    write_text(Path(path), json.dumps(stamped, indent=2, sort_keys=True) + "\n")
    return stamped

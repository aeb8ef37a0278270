"""serialct.provenance: the record beside every output names the code, model, reference, config
and inputs, and is the same for the same run except time and host."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from serialct import provenance
from serialct.config import defaults


def _files(tmp: Path) -> tuple[Path, Path, Path]:
    paths = tmp / "manifest.json", tmp / "net.pt", tmp / "reference.tsv"
    for i, path in enumerate(paths):
        path.write_bytes(bytes([i]) * (1000 + i))
    return paths


def test_scan_record_names_what_made_the_scan(tmp_path: Path) -> None:
    manifest, model, reference = _files(tmp_path)
    record = provenance.scan_record(manifest, model, reference, defaults())
    assert record["model"] == {
        "path": str(model), "sha256": hashlib.sha256(model.read_bytes()).hexdigest()
    }  # fmt: skip
    assert record["inputs"]["manifest"]["sha256"] == provenance.sha256(manifest)
    assert record["reference_histogram"]["sha256"] == provenance.sha256(reference)
    assert record["config"]["values"]["lung"]["threshold_hu"] == -300
    soft = record["software"]
    assert soft["serialct"] and soft["python"] and soft["libraries"]["numpy"]
    assert soft["commit"] is None or len(soft["commit"]) == 40


def test_same_run_same_record_but_time_and_host(tmp_path: Path) -> None:
    manifest, model, reference = _files(tmp_path)
    config = defaults()
    first = provenance.write(
        tmp_path / "a.json", provenance.scan_record(manifest, model, reference, config)
    )
    second = provenance.write(
        tmp_path / "b.json", provenance.scan_record(manifest, model, reference, config)
    )
    assert json.loads((tmp_path / "a.json").read_text()) == first
    drop = {"time", "host"}
    assert {k: v for k, v in first.items() if k not in drop} == {
        k: v for k, v in second.items() if k not in drop
    }
    config["lung"]["threshold_hu"] = -310
    changed = provenance.scan_record(manifest, model, reference, config)
    assert changed["config"]["sha256"] != first["config"]["sha256"]
    model.write_bytes(b"other weights")
    assert (
        provenance.scan_record(manifest, model, reference, defaults())["model"]["sha256"]
        != (first["model"]["sha256"])
    )


def test_cohort_record_hashes_every_input(tmp_path: Path) -> None:
    manifest, model, reference = _files(tmp_path)
    record = provenance.cohort_record([reference, manifest], model, reference, defaults())
    assert [i["path"] for i in record["inputs"]] == sorted([str(reference), str(manifest)])

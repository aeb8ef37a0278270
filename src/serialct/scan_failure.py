"""One scan's bad input does not stop a cohort: its step records one line and the others go on.

In the workflow every per-scan step (convert, lung, lesion, quantify, export) runs through
:func:`run_scan_step`. When it fails on the scan's own input (exit status 2 of
:mod:`serialct.failures`, a message that names one of the scan's own files: its DICOM series or
its folder of results; a corrupt or truncated DICOM or image, a series that cannot be stacked,
a CT and a mask on different grids, ...):

- the one-line message (:func:`serialct.failures.describe`) goes to the job's log, and to the
  scan's ``failed.txt`` as ``STEP: message``;
- the step's outputs are written as placeholders, so the DAG stays whole and the other scans
  and the fan-in go on: images and other files empty, JSON ``{"failed": "STEP: message"}``, the
  QC picture a small PNG that says why;
- quantify writes ``metrics.json`` with the scan's identity, no measurements and
  ``qc_status`` ``error: STEP: message``: the scan is left out of the statistics and listed,
  with that line, in ``stats/excluded.tsv`` and the report's list of scans left out.

Later steps of such a scan see ``failed.txt`` and only write their placeholders. A step that
runs again (its inputs or settings changed) first removes a ``failed.txt`` of its own or of a
later step, so a scan whose DICOM was replaced is tried again. A failure of the machine or the
program (disk full, out of memory, a bug: exit status 1) still fails the job after the same one
line, so that Snakemake's retries with more memory still happen and a bug is not hidden; so
does bad input that is not the scan's own (the model, the reference histogram, the config) and
a missing or unreadable file (an unmounted archive, permissions): every scan would fail alike,
and placeholders would make the run look finished.
"""

from __future__ import annotations

import json
import logging
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

from PIL import Image, ImageDraw

from serialct.atomic import atomic_path, write_text
from serialct.failures import EXIT_INPUT, describe
from serialct.readers import read_json

log = logging.getLogger("serialct")

FAILED_NAME: Final = "failed.txt"
STEPS: Final = ("convert", "lung", "lesion", "quantify", "export")  # in the order they run
IDENTITY: Final = ("center", "patient_id", "scan_id", "study_date")
NOTE_SIZE: Final = (480, 120)  # pixels of the placeholder QC picture
NOTE_COLUMNS: Final = 70  # characters per line of its text


def failed_line(scan_dir: Path) -> str | None:
    """``STEP: message`` of the scan's failed step, or None."""
    marker = Path(scan_dir) / FAILED_NAME
    return marker.read_text().strip() if marker.exists() else None


def _clear_own_marker(scan_dir: Path, step: str) -> None:
    """Remove a marker of ``step`` or of a later step: this step runs again."""
    line = failed_line(scan_dir)
    if line is not None and line.split(":", 1)[0] in STEPS[STEPS.index(step) :]:
        (Path(scan_dir) / FAILED_NAME).unlink()


def write_placeholders(outputs: Sequence[Path], line: str) -> None:
    """Placeholder outputs of a step that did not run: see the module docstring."""
    for path in map(Path, outputs):
        with atomic_path(path) as tmp:
            if path.suffix == ".json":
                tmp.write_text(json.dumps({"failed": line}) + "\n")
            elif path.suffix == ".png":
                picture = Image.new("L", NOTE_SIZE, color=255)
                text = textwrap.fill(f"not measured: {line}", NOTE_COLUMNS, break_long_words=True)
                ImageDraw.Draw(picture).multiline_text((10, 10), text, fill=0)
                picture.save(tmp, format="PNG")
            else:
                tmp.write_bytes(b"")


def failed_metrics(manifest: dict[str, Any], line: str) -> dict[str, Any]:
    """``metrics.json`` of a scan that was not measured (identity from its scan manifest)."""
    return {
        **{key: manifest.get(key) for key in IDENTITY},
        "qc_status": f"error: {line}",
        "qc_messages": [line],
    }


def write_not_measured(manifest: Path, metrics: Path, qc_png: Path, line: str) -> None:
    """quantify's outputs for a scan that was not measured."""
    payload = failed_metrics(read_json(manifest, "scan manifest"), line)
    write_text(Path(metrics), json.dumps(payload, indent=2) + "\n")
    write_placeholders([Path(qc_png)], line)


def note_export_failure(metrics: Path, scan_dir: Path) -> None:
    """Add a failed DICOM export's line to a measured scan's ``qc_messages`` (its numbers and
    ``qc_status`` stay: the export comes after them), so that the issues table shows it."""
    line = failed_line(scan_dir)
    payload = read_json(metrics, "scan metrics")
    if line is None or not line.startswith("export:") or "failed" in payload:
        return
    if line not in payload.get("qc_messages", []):
        payload["qc_messages"] = [*payload.get("qc_messages", []), line]
        write_text(Path(metrics), json.dumps(payload, indent=2) + "\n")


def dicom_folders(manifest: Path) -> list[Path]:
    """The folders of a scan's DICOM files (from its scan manifest): convert's own input."""
    files = read_json(manifest, "scan manifest").get("files", [])
    return sorted({Path(f).parent for f in files})


def _is_the_scans(exc: Exception, message: str, own: Sequence[Path]) -> bool:
    """Whether a failure is the scan's own bad input (see the module docstring)."""
    return not isinstance(exc, OSError) and any(str(path) in message for path in own)


def run_scan_step(
    step: str,
    scan_dir: Path,
    outputs: Sequence[Path],
    work: Callable[[], Any],
    on_failure: Callable[[str], None] | None = None,
    own: Sequence[Path] = (),
) -> bool:
    """Run one step of one scan (see the module docstring); True if it ran and succeeded.

    ``own``: the scan's own inputs besides ``scan_dir`` (convert: its DICOM folders); a bad
    input failure that names none of them fails the job. ``on_failure(line)``, when given,
    writes the outputs of a failed scan instead of the plain placeholders (quantify's
    metrics.json)."""
    scan_dir = Path(scan_dir)
    _clear_own_marker(scan_dir, step)
    line = failed_line(scan_dir)
    if line is None:
        try:
            work()
            return True
        except Exception as exc:  # (an interruption is no Exception: it propagates)
            failure = describe(exc)
            log.error("%s: %s", step, failure.message)
            scans_own = _is_the_scans(exc, failure.message, [scan_dir, *own])
            if failure.exit_code != EXIT_INPUT or not scans_own:
                raise
            line = f"{step}: {failure.message}"
            write_text(scan_dir / FAILED_NAME, line + "\n")
    else:
        log.error("not run: an earlier step failed (%s)", line)
    if on_failure is None:
        write_placeholders(outputs, line)
    else:
        on_failure(line)
    return False

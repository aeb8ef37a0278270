"""The normal-lung reference histogram: which one a run uses, and building one from normal scans.

The Hellinger distance and histogram IoU of each scan compare its lung HU histogram with the
mean histogram of normal lungs (the paper used 1,013 normal patients). The repository ships one
built from the real non-COVID chest series in ``../shared/data/real``
(``serialct.shipped.SHIPPED_REFERENCE``, see ``resources/reference/README.md``); a site builds its
own from a DICOM folder of scans it lists as normal (config ``normal_scans``, rule ``reference``
or ``serialct reference --dicom``).

A reference is stored at REFERENCE_BIN_HU over REFERENCE_RANGE_HU, and read back on the
config's ``histogram`` bins (``on_bins``), so one reference serves any bin width and range
inside that span.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
import SimpleITK as sitk

from serialct import histogram
from serialct.atomic import atomic_path, write_text
from serialct.errors import InputError
from serialct.shipped import locate

log = logging.getLogger("serialct")

# -1024 HU: the lowest value CT stores for air; +500 HU: above every lung voxel but bone
# fragments at the lung's edge, so the reference covers aerated lung through consolidation.
REFERENCE_RANGE_HU: Final = (-1024.0, 500.0)
REFERENCE_BIN_HU: Final = 1.0
REFERENCE_TSV: Final = "reference/normal_lung_histogram.tsv"  # under results, config normal_scans
SCANS_SUFFIX: Final = ".scans.tsv"  # beside a reference built from DICOM: the scans, used or not
FINGERPRINT_SUFFIX: Final = ".fingerprint"  # ... and the fingerprint of the folders it read


def normal_folders(config: dict[str, Any]) -> list[str]:
    """Config ``normal_scans`` as a list of folders (empty when unset)."""
    value = config.get("normal_scans")
    if not value:
        return []
    return [value] if isinstance(value, str) else list(value)


def normal_fingerprint(config: dict[str, Any]) -> str:
    """What the ``reference`` rule's output must match: the tree fingerprints of the
    ``normal_scans`` folders (a new scan rebuilds the reference); with a folder not mounted,
    the fingerprint recorded by the last build (nothing reruns; a warning says so)."""
    from serialct.dicom.tree import tree_fingerprint

    folders = [Path(f) for f in normal_folders(config)]
    if all(f.is_dir() for f in folders):
        return " ".join(tree_fingerprint(f) for f in folders)
    recorded = (Path(config["results"]) / REFERENCE_TSV).with_suffix(FINGERPRINT_SUFFIX)
    missing = ", ".join(str(f) for f in folders if not f.is_dir())
    if not recorded.is_file():
        return f"missing: {missing}"
    log.warning("normal scans %s not found: using the reference built before", missing)
    return recorded.read_text().strip()


def reference_path(config: dict[str, Any]) -> Path:
    """The reference a run compares with: the one built from config ``normal_scans`` under
    ``results`` when that is set, else config ``reference_histogram``; the schema's default
    (a relative path) resolves to the shipped file when it is not found from the cwd."""
    if normal_folders(config):
        return Path(config["results"]) / REFERENCE_TSV
    return locate(config["reference_histogram"])


def on_bins(
    reference: tuple[np.ndarray, np.ndarray], edges: np.ndarray, source: Path
) -> np.ndarray:
    """The reference density summed onto ``edges`` (each of which must be a reference bin
    edge), renormalised over their range like a scan's histogram."""
    ref_edges, density = reference
    if np.array_equal(ref_edges, edges):
        return density
    at = np.searchsorted(ref_edges, edges)
    inside = (at < len(ref_edges)) & (at > 0) | np.isclose(edges, ref_edges[0])
    exact = inside & np.isclose(ref_edges[np.clip(at, 0, len(ref_edges) - 1)], edges)
    if not exact.all():
        raise InputError(
            f"{source}: config histogram bins ({edges[0]:g}..{edges[-1]:g} HU by "
            f"{edges[1] - edges[0]:g}) do not fall on the reference's bin edges "
            f"({ref_edges[0]:g}..{ref_edges[-1]:g} by {ref_edges[1] - ref_edges[0]:g}); "
            "rebuild the reference (serialct reference) or change config histogram"
        )
    cumulative = np.concatenate([[0.0], np.cumsum(density)])
    summed = np.diff(cumulative[at])
    total = summed.sum()
    if total <= 0:
        raise InputError(f"{source}: the reference has no density inside the config histogram")
    return summed / total


def reference_edges() -> np.ndarray:
    """The bin edges every reference is stored on (REFERENCE_RANGE_HU by REFERENCE_BIN_HU)."""
    lo, hi = REFERENCE_RANGE_HU
    return np.arange(lo, hi + REFERENCE_BIN_HU / 2, REFERENCE_BIN_HU)


def build_from_dicom(
    dicoms: Sequence[Path], out_tsv: Path, out_scans: Path, config: dict[str, Any],
    source: str = "", fingerprint: str | None = None,
) -> pd.DataFrame:  # fmt: skip
    """A reference from every scan found under the ``dicoms`` folders (series chosen by config
    ``series``):
    converted, lungs masked (config ``lung``), the mean of their lung histograms. Scans whose
    lung mask fails the QC (volume, left/right ratio, coverage) are left out. ``out_scans``
    lists every scan with its lung volume and why it was used or not; a JSON sidecar of
    ``out_tsv`` says what the reference was built from (``source``, else the folders), and
    ``fingerprint`` (the workflow's, see ``normal_fingerprint``) is recorded beside it."""
    from serialct.dicom.convert import convert_series
    from serialct.dicom.index import write_index
    from serialct.lung import lung_qc, lung_volume_cm3, segment_lungs

    folders = [Path(d) for d in dicoms]
    if not folders:
        raise InputError("config normal_scans: no folder of normal scans given")
    for folder in folders:
        if not folder.is_dir():
            raise InputError(f"{folder}: folder of normal scans not found (config normal_scans)")
    edges = reference_edges()
    rows, densities = [], []
    with tempfile.TemporaryDirectory(prefix="serialct-reference-") as tmp:
        work = Path(tmp)
        found = [
            write_index(
                folder,
                "normal",
                work / f"index{i}.tsv",
                work / f"manifests{i}",
                series_cfg=config["series"],
            )  # fmt: skip
            for i, folder in enumerate(folders)
        ]
        scans = pd.concat(found, ignore_index=True)
        if scans.empty:
            raise InputError(
                f"{', '.join(map(str, folders))}: no CT series found for the reference"
            )
        for _, scan in scans.iterrows():
            name = f"{scan['patient_id']}/{scan['scan_id']}"
            nifti = work / "ct.nii.gz"
            convert_series([Path(f) for f in scan["files"]], nifti, work / "ct.json")
            ct = sitk.ReadImage(str(nifti))
            lung = segment_lungs(ct, config["lung"])
            reasons = lung_qc(lung, config["lung"])
            volume = lung_volume_cm3(lung)
            row = {"scan": name, "lung_volume_cm3": round(volume, 1)}
            if reasons:
                row["used"], row["reason"] = False, "; ".join(reasons)
                log.warning("normal reference: %s left out: %s", name, row["reason"])
            else:
                hu = sitk.GetArrayViewFromImage(ct)
                mask = sitk.GetArrayViewFromImage(lung) > 0
                counts, _ = np.histogram(hu[mask], bins=edges)
                densities.append(counts / max(counts.sum(), 1))
                row["used"], row["reason"] = True, ""
                log.info("normal reference: %s, lung %.0f cm3", name, volume)
            rows.append(row)
    table = pd.DataFrame(rows)
    if not densities:
        raise InputError(
            f"{out_scans}: no normal scan passed the lung QC, so no reference was built "
            f"(see the reasons in {out_scans})"
        )
    mean = np.mean(densities, axis=0)
    with atomic_path(Path(out_scans)) as tmp_scans:
        table.to_csv(tmp_scans, sep="\t", index=False)
    with atomic_path(Path(out_tsv)) as tmp_tsv:
        histogram.write_reference(tmp_tsv, edges, mean / mean.sum())
    summary = (
        f"mean lung HU histogram of {len(densities)} normal scan(s) from "
        f"{source or ', '.join(map(str, folders))} "
        f"(serialct reference; lung masks by serialct.lung; {REFERENCE_BIN_HU:g} HU bins "
        f"{REFERENCE_RANGE_HU[0]:g}..{REFERENCE_RANGE_HU[1]:g})"
    )
    sidecar = {"summary": summary, "scans": table.to_dict(orient="records")}
    with atomic_path(Path(out_tsv).with_suffix(".json")) as tmp_json:
        Path(tmp_json).write_text(json.dumps(sidecar, indent=1) + "\n")
    if fingerprint is not None:
        write_text(Path(out_tsv).with_suffix(FINGERPRINT_SUFFIX), fingerprint + "\n")
    return table

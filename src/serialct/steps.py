"""One function per workflow step, taking and writing paths.

The Snakemake scripts and the CLI call these; all logic lives in the modules they call.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import SimpleITK as sitk

from serialct import histogram, quantify, sheets, tables
from serialct.atomic import atomic_files, atomic_path, write_text
from serialct.errors import InputError
from serialct.readers import check_same_grid, read_image, read_json
from serialct.scan_failure import failed_line, write_placeholders

log = logging.getLogger("serialct")


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    write_text(Path(path), json.dumps(payload, indent=2, default=_json_default) + "\n")


def _write_image(image: sitk.Image, path: Path) -> None:
    with atomic_path(Path(path)) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=True)


def _write_tsv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(Path(path)) as tmp:
        frame.to_csv(tmp, sep="\t", index=False)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


class _Timer:
    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        log.info("%s took %.1f s", self.what, time.perf_counter() - self.start)


def index_center(
    dicom: Path, center: str, out_tsv: Path, manifest_dir: Path,
    config: dict[str, Any] | None = None, fingerprint: str | None = None, threads: int = 1,
) -> None:  # fmt: skip
    """Scan index, manifests and ``index/{center}.series.tsv`` (config ``series``,
    ``pseudonymise``; the pseudonym mapping must lie outside ``results``).

    Last, ``index/{center}.fingerprint`` records the tree fingerprint indexed: ``fingerprint``
    (the workflow passes the one it planned with) or the tree's own, taken before indexing. It
    lets the workflow run from tables with the DICOM root unmounted (``index_fingerprint``).
    ``threads`` processes read the headers."""
    from serialct.config import defaults
    from serialct.dicom.index import write_index
    from serialct.dicom.pseudonym import check_outside
    from serialct.dicom.tree import fingerprint_path, tree_fingerprint

    config = config if config is not None else defaults()
    pseudonymise = config.get("pseudonymise")
    if pseudonymise:
        check_outside(Path(pseudonymise["mapping"]), Path(config["results"]))
    if not Path(dicom).is_dir():
        raise InputError(
            f"{dicom}: DICOM folder of centre {center} not found (mount it, or fix the centre's "
            "dicom in the config)"
        )
    fingerprint = fingerprint or tree_fingerprint(Path(dicom))
    with _Timer(f"index of centre {center}"):
        cache = Path(out_tsv).with_suffix(".headers-cache.tsv")
        found = write_index(
            Path(dicom), center, Path(out_tsv), Path(manifest_dir), cache=cache,
            series_cfg=config["series"], pseudonymise=pseudonymise,
            patients=patients_sheet(config, center), workers=threads,
        )  # fmt: skip
    write_text(fingerprint_path(Path(out_tsv)), fingerprint + "\n")
    log.info("centre %s: %d scans indexed", center, len(found))


def patients_sheet(config: dict[str, Any], center: str) -> Path | None:
    """Config ``centers.<center>.patients`` (the centre's patients sheet), or None."""
    sheet = config.get("centers", {}).get(center, {}).get("patients")
    return Path(sheet) if sheet else None


def convert_scan(manifest: Path, out_nifti: Path, out_json: Path) -> None:
    from serialct.dicom.convert import convert_series

    scan = read_json(manifest, "scan manifest")
    with _Timer(f"convert {scan['patient_id']}/{scan['scan_id']}"):
        with atomic_path(Path(out_nifti)) as tmp_nifti, atomic_path(Path(out_json)) as tmp_json:
            sidecar = convert_series([Path(f) for f in scan["files"]], tmp_nifti, tmp_json)
    sidecar.update({k: scan[k] for k in ("center", "patient_id", "scan_id", "study_date")})
    _write_json(out_json, sidecar)


def segment_masks(
    ct_path: Path,
    lung_out: Path,
    lobes_out: Path,
    config: dict[str, Any],
    user_lobes: Path | None = None,
) -> list[str]:
    """Lung and lobe masks; ``user_lobes`` (a lobe mask from ``lobes_from``, see
    ``serialct.lobes.user_lobes_path``) replaces the approximate split. The lung QC reasons are
    returned and written to ``lung_qc.json`` beside ``lung_out``."""
    from serialct.lobes import load_user_lobes, segment_lobes
    from serialct.lung import lung_qc, segment_lungs
    from serialct.lung.qc import coverage_reasons, implausible_reasons

    ct = read_image(ct_path)
    with _Timer("lung mask"):
        lung = segment_lungs(ct, config["lung"])
    cut = coverage_reasons(lung)
    implausible = implausible_reasons(lung, config["lung"], cut)
    reasons = lung_qc(lung, config["lung"], implausible)
    with _Timer("lobes"):
        if user_lobes is not None:
            lobes = load_user_lobes(Path(user_lobes), ct)
        elif cut:
            # the approximate split stretches its planes over the lung it sees: on a scan
            # that cuts the lungs it would place upper lobes at a mid-chest top
            lobes = sitk.Image(lung.GetSize(), sitk.sitkUInt8)
            lobes.CopyInformation(lung)
            reasons.append("lobes not placed: the scan does not show both lungs apex to base")
        else:
            lobes = segment_lobes(ct, lung)
    _write_image(lung, lung_out)
    _write_image(lobes, lobes_out)
    _write_json(
        Path(lung_out).parent / "lung_qc.json",
        {
            "qc_messages": reasons,
            "qc_fail": implausible,
            "lobes": str(user_lobes) if user_lobes else "approximate",
        },
    )
    return reasons


def segment_lesions(
    ct_path: Path, lung_path: Path, model: Path, out: Path, config: dict[str, Any],
    threads: int | None = None, net_lock: AbstractContextManager[Any] | None = None,
    keep: Callable[[], bool] = lambda: True,
) -> None:  # fmt: skip
    """Lesion labels of one scan; on CPU inference uses ``threads`` (the job's allocation).

    A warm worker serving several scans (serialct.lesion.worker) passes ``net_lock``, held
    while the scan is segmented (it is read and written outside it), and ``keep``, asked
    before segmenting and before writing (False: the job that asked has gone)."""
    import torch

    from serialct.lesion.infer import segment_lesions as infer

    ct, lung = read_image(ct_path), read_image(lung_path)
    check_same_grid(ct, Path(ct_path), lung, Path(lung_path))
    with net_lock or nullcontext():
        if not keep():
            return
        if threads:
            torch.set_num_threads(int(threads))
        with _Timer("lesion segmentation"):
            lesion = infer(ct, lung, Path(model), config)
    if keep():
        _write_image(lesion, out)


def quantify_scan(
    scan_dir: Path, sidecar: Path, reference: Path, metrics_out: Path, qc_png: Path,
    config: dict[str, Any],
) -> None:  # fmt: skip
    from serialct.figures import qc_overlay

    scan_dir = Path(scan_dir)
    paths = {n: scan_dir / f"{n}.nii.gz" for n in ("ct", "lung", "lobes", "lesion")}
    images = {n: read_image(path) for n, path in paths.items()}
    for name in ("lung", "lobes", "lesion"):
        check_same_grid(images["ct"], paths["ct"], images[name], paths[name])
    identity = read_json(sidecar, "scan sidecar (written with ct.nii.gz by serialct convert)")
    with _Timer("quantification"):
        measured = quantify.quantify_scan(
            images["ct"], images["lung"], images["lobes"], images["lesion"],
            _reference_on_bins(Path(reference), config), config,
        )  # fmt: skip
    metrics = {
        k: identity.get(k) for k in ("center", "patient_id", "scan_id", "study_date", "qc_status")
    }
    metrics["qc_messages"] = identity.get("qc_messages", [])
    lung_qc = scan_dir / "lung_qc.json"
    qc = read_json(lung_qc, "lung QC (written by serialct masks)") if lung_qc.exists() else {}
    lung_reasons = [*qc.get("qc_messages", []), *measured.pop("lobe_messages")]
    if lung_reasons:
        metrics["qc_messages"] = [*metrics["qc_messages"], *lung_reasons]
        status = metrics["qc_status"] or "ok"
        # an implausible lung (volume, left/right, coverage) fails out of the statistics
        level = "fail" if qc.get("qc_fail") else "warn"
        if status == "ok":
            prefix = f"{level}: "
        elif level == "fail" and not status.startswith(("fail", "error")):
            prefix = f"fail: {status}; "
        else:
            prefix = f"{status}; "
        metrics["qc_status"] = prefix + "; ".join(lung_reasons)
    metrics.update(measured)
    _write_json(metrics_out, metrics)
    with atomic_path(Path(qc_png)) as tmp_png:
        qc_overlay(images["ct"], images["lung"], images["lesion"], tmp_png, images["lobes"])
    log.info(
        "%s/%s: lung %.0f cm3, lesion %.1f cm3 (%.2f %%)", metrics["patient_id"],
        metrics["scan_id"], measured["lung_volume_cm3"], measured["lesion_volume_cm3"],
        measured["lesion_percent"],
    )  # fmt: skip


def export_dicom(
    manifest: Path, scan_dir: Path, metrics: Path, seg_out: Path, sr_out: Path,
    config: dict[str, Any],
) -> None:  # fmt: skip
    """The scan's DICOM-SEG (lungs, lobes, lesions on its source series) and TID 1500 SR."""
    from serialct.dicom import seg, sr
    from serialct.dicom.headers import read_dataset
    from serialct.provenance import software

    scan = read_json(manifest, "scan manifest")
    sources = []
    for path in scan["files"]:
        found = read_dataset(path)  # (convert skips the same files: not DICOM, or no image)
        if found is not None and found[0]["Rows"]:
            sources.append(found[1])
    if not sources:
        raise InputError(f"{scan['files'][0]}: no readable DICOM image to reference from a SEG")
    paths = {n: Path(scan_dir) / f"{n}.nii.gz" for n in ("lung", "lobes", "lesion")}
    masks = {n: read_image(path) for n, path in paths.items()}
    for name in ("lobes", "lesion"):
        check_same_grid(masks["lung"], paths["lung"], masks[name], paths[name])
    made = software()
    version = " ".join(filter(None, (made["serialct"], (made["commit"] or "")[:12])))
    with _Timer("DICOM-SEG and SR"):
        segmentation = seg.build(
            sources, masks, scan["patient_id"], bool(config.get("pseudonymise")), version
        )
        report = sr.build(segmentation, sources, read_json(metrics, "scan metrics"), version)
        with atomic_path(Path(seg_out)) as tmp_seg, atomic_path(Path(sr_out)) as tmp_sr:
            segmentation.save_as(tmp_seg)
            report.save_as(tmp_sr)
    log.info(
        "%s/%s: seg.dcm %d segments, %d frames", scan["patient_id"], scan["scan_id"],
        len(segmentation.SegmentSequence), int(segmentation.NumberOfFrames),
    )  # fmt: skip


def build_tables(
    metrics_files: Sequence[Path], config: dict[str, Any], scans_out: Path, patients_out: Path,
    issues_out: Path,
) -> None:  # fmt: skip
    metrics = tables.read_metrics(metrics_files)
    clinical = {c: sheets.read_clinical(Path(s["clinical"])) for c, s in config["centers"].items()}
    readings = {
        c: sheets.read_readings(Path(s["readings"])) if s.get("readings") else None
        for c, s in config["centers"].items()
    }
    scans, issues = tables.build_scans_table(metrics, clinical, readings, config)
    _write_tsv(scans, scans_out)
    _write_tsv(tables.build_patients_table(scans), patients_out)
    _write_tsv(issues, issues_out)
    log.info(
        "%d scans of %d patients; %d issues", len(scans), scans["patient_id"].nunique(), len(issues)
    )


def _sheet_center(sheet: pd.DataFrame, scans: pd.DataFrame, path: Path) -> pd.DataFrame:
    """A clinical or readings sheet tagged with its centre (unless it has a ``center`` column):
    the centre whose scans match most of the sheet's rows on patient_id and date (readings:
    study_date; clinical: onset_date = study_date - days_since_onset); untagged on a tie."""
    if "center" in sheet.columns or "center" not in scans.columns or sheet.empty:
        return sheet
    study = pd.to_datetime(scans["study_date"]).dt.normalize()
    if "study_date" in sheet.columns:
        scan_date, sheet_date = study, pd.to_datetime(sheet["study_date"]).dt.normalize()
    else:
        onset = pd.to_numeric(scans.get("days_since_onset"), errors="coerce")
        scan_date = study - pd.to_timedelta(onset, unit="D")
        sheet_date = pd.to_datetime(sheet["onset_date"]).dt.normalize()
    keys = set(zip(sheet["patient_id"].astype(str), sheet_date, strict=True))
    hits = [
        (pid, date) in keys
        for pid, date in zip(scans["patient_id"].astype(str), scan_date, strict=True)
    ]
    overlap = (
        scans.assign(_pid=scans["patient_id"].astype(str))[hits]
        .groupby("center")["_pid"]
        .nunique()
        .sort_values(ascending=False)
    )
    if overlap.empty or (len(overlap) > 1 and overlap.iloc[0] == overlap.iloc[1]):
        log.warning("%s: cannot tell which centre this sheet belongs to", path)
        return sheet
    return sheet.assign(center=str(overlap.index[0]))


def cohort_stats(
    scans_tables: Sequence[Path], clinical_sheets: Sequence[Path], readings_sheets: Sequence[Path],
    config: dict[str, Any], out_dir: Path,
) -> None:  # fmt: skip
    """The cohort analysis from per-scan tables alone (several centres' tables pool)."""
    from serialct.stats.cohort import run_cohort_stats

    clinical_frames = [(Path(p), sheets.read_clinical(Path(p))) for p in clinical_sheets]
    scans = pd.concat(
        [sheets.read_scans_table(Path(p)).assign(_table=str(p)) for p in scans_tables],
        ignore_index=True,
    )
    if scans.empty:
        raise InputError(
            f"{', '.join(map(str, scans_tables))}: no scans to analyse (an empty index: the "
            "index/CENTER.series.tsv beside the results' tables says why each series was left "
            "out, e.g. config series limits)"
        )
    clinical = pd.concat(
        [_sheet_center(frame, scans, path) for path, frame in clinical_frames], ignore_index=True
    )
    duplicated = scans.duplicated(["center", "patient_id", "scan_id"], keep=False)
    if duplicated.any():
        first = scans[duplicated].iloc[0]
        raise InputError(
            f"scan {first['center']}/{first['patient_id']}/{first['scan_id']} appears in more than "
            "one scans table; pool each centre's table once"
        )
    for path in readings_sheets:
        readings = _sheet_center(sheets.read_readings(Path(path)), scans, Path(path))
        _refuse_conflicting_scores(scans, readings, Path(path))
        if "center" not in readings.columns:
            scans = sheets.attach_readings(scans, readings)
            continue
        at = scans["center"].astype(str) == str(readings["center"].iloc[0])
        scans = pd.concat(
            [sheets.attach_readings(scans[at], readings.drop(columns="center")), scans[~at]],
            ignore_index=True,
        )
    with atomic_files(Path(out_dir)) as tmp_dir:
        run_cohort_stats(scans.drop(columns="_table"), clinical, config, tmp_dir)


def _refuse_conflicting_scores(scans: pd.DataFrame, readings: pd.DataFrame, path: Path) -> None:
    """InputError when a reading's ct_score differs from the one a scans table already holds
    for the same scan (patient_id and study date; same centre when the readings have one)."""
    keys = ["patient_id", "_date"] + (["center"] if "center" in readings.columns else [])
    scored = scans[scans["ct_score"].notna()].assign(
        _date=lambda f: pd.to_datetime(f["study_date"]).dt.normalize()
    )
    given = readings.assign(_date=pd.to_datetime(readings["study_date"]).dt.normalize())
    both = scored.merge(given[[*keys, "ct_score"]], on=keys, suffixes=("", "_reading"))
    differ = both[both["ct_score"] != both["ct_score_reading"]]
    if not differ.empty:
        row = differ.iloc[0]
        raise InputError(
            f"{path}: ct_score {row['ct_score_reading']:g} of {row['patient_id']} on "
            f"{row['_date']:%Y-%m-%d} differs from {row['ct_score']:g} in {row['_table']} "
            f"({len(differ)} such scans); give each scan's CT score in one of the two"
        )


def _reference_on_bins(path: Path, config: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The reference histogram read and summed onto the config's histogram bins."""
    from serialct.reference import on_bins

    edges = histogram.histogram_edges(config["histogram"])
    return edges, on_bins(histogram.read_reference(path), edges, path)


def _measure_failed(scan_dir: Path) -> bool:
    """Whether a step up to quantify failed (a failed DICOM export leaves the numbers whole)."""
    line = failed_line(scan_dir)
    return line is not None and not line.startswith("export:")


def build_reference(scan_dirs: Sequence[Path], out: Path, config: dict[str, Any]) -> None:
    """Normal-lung HU histogram from scan folders (``ct.nii.gz`` + ``lung.nii.gz``): the mean
    of their lung histograms, on the reference bins (``serialct.reference``)."""
    from serialct.reference import reference_edges

    edges = reference_edges()
    densities = []
    for scan_dir in map(Path, scan_dirs):
        ct_path, lung_path = scan_dir / "ct.nii.gz", scan_dir / "lung.nii.gz"
        ct_image, lung_image = read_image(ct_path), read_image(lung_path)
        check_same_grid(ct_image, ct_path, lung_image, lung_path)
        ct, lung = sitk.GetArrayFromImage(ct_image), sitk.GetArrayFromImage(lung_image)
        counts, _ = np.histogram(ct[lung > 0], bins=edges)
        densities.append(counts / max(counts.sum(), 1))
    if not densities:
        raise InputError("reference: no scan folders given")
    mean = np.mean(densities, axis=0)
    histogram.write_reference(Path(out), edges, mean / mean.sum())
    log.info("reference histogram of %d normal scans -> %s", len(densities), out)


def make_figures(
    scans_tsv: Path, fits_tsv: Path, exemplary_files: Sequence[Path], outputs: Sequence[Path]
) -> None:
    """Figures 2-4 (outputs in that order)."""
    from serialct import figures

    scans = sheets.read_scans_table(Path(scans_tsv))
    fits = pd.read_csv(fits_tsv, sep="\t")
    fig2, fig3, fig4 = map(Path, outputs)
    with atomic_path(fig2) as tmp2, atomic_path(fig3) as tmp3:
        figures.figure2(scans, fits, tmp2)
        figures.figure3(scans, fits, tmp3)
    # scans that were not measured (serialct.scan_failure) have no images to show
    scan_dirs = sorted(
        d for d in {Path(f).parent for f in exemplary_files} if not _measure_failed(d)
    )
    # scans/CENTER/PATIENT/SCAN: the same patient id may exist at two centres
    lookup = scans.astype({"center": str}).set_index(["center", "patient_id", "scan_id"])
    titles = []
    for scan_dir in scan_dirs:
        key = (scan_dir.parent.parent.name, scan_dir.parent.name, scan_dir.name)
        day = lookup.loc[key, "days_since_onset"] if key in lookup.index else None
        titles.append(f"{key[1]} {key[2]}" + (f" (day {day:.0f})" if pd.notna(day) else ""))
    if not scan_dirs:
        write_placeholders([fig4], "figure 4: none of the example patient's scans was measured")
        return
    with atomic_path(fig4) as tmp4:
        figures.figure4(scan_dirs, titles, tmp4)


def write_report(
    out_html: Path, stats_dir: Path, tables_dir: Path, figures_dir: Path,
    qc_pngs: Sequence[Path], config: dict[str, Any], series_tables: Sequence[Path] = (),
    provenance: dict[str, Any] | None = None,
) -> None:  # fmt: skip
    from serialct import report

    if isinstance(series_tables, str | Path):  # Snakemake passes a single file as a string
        series_tables = [series_tables]
    with atomic_path(Path(out_html)) as tmp_html:
        report.write_report(
            tmp_html, Path(stats_dir), Path(tables_dir), Path(figures_dir),
            [Path(p) for p in qc_pngs], config, [Path(p) for p in series_tables], provenance,
        )  # fmt: skip

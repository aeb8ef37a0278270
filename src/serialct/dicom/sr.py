"""DICOM structured report (TID 1500 measurement report, highdicom) of one scan's measurements.

One volumetric group per segment of the scan's SEG (:mod:`serialct.dicom.seg`), referencing it:
lungs and lesion kinds their volume (cm3) and, for lesion kinds, percent of the lung; lobes the
percent of the lobe that is lesion and the lobe's 0-5 score. One image-level group (TID 1501)
holds the scan's totals: lung and lesion volume, lesion percent and the AI CT score. A value the
scan has not got (no lobes on a partial scan) is left out, never written as 0. Concepts that no
standard code names (percents of an organ, the CT score) use the local scheme ``99SERIALCT``.
"""

from __future__ import annotations

import math
from typing import Any, Final

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from serialct.constants import (
    LESION_CONSOLIDATION,
    LESION_GGO,
    LESION_OTHER,
    LOBE_LABELS,
    LUNG_LEFT,
    LUNG_RIGHT,
)
from serialct.dicom.seg import SEGMENTS

LOCAL_SCHEME: Final = "99SERIALCT"
SERIES_NUMBER: Final = 9002
SERIES_DESCRIPTION: Final = "serialct measurements"
CT_CHEST: Final = hd.sr.CodedConcept("24627-2", "LN", "CT Chest")  # procedure reported
VOLUME: Final = codes.SCT.Volume
CM3: Final = codes.UCUM.CubicCentimeter
PERCENT: Final = codes.UCUM.Percent
SCORE: Final = hd.sr.CodedConcept("{score}", "UCUM", "score")
DEVICE_UID: Final = generate_uid(entropy_srcs=["serialct", "device"])  # the same in every SR


def _local(value: str, meaning: str) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(value, LOCAL_SCHEME, meaning)


PERCENT_OF_LUNG: Final = _local("pct-of-lung", "Percent of lung volume")
PERCENT_OF_LOBE: Final = _local("lesion-pct-lobe", "Lesion percent of lobe volume")
LOBE_SCORE: Final = _local("lobe-ct-score", "Lobe CT score (0-5)")
AI_CT_SCORE: Final = _local("ai-ct-score", "AI CT score (0-25)")
LUNG_VOLUME: Final = _local("lung-volume", "Lung volume")
LESION_VOLUME: Final = _local("lesion-volume", "Lesion volume")
LESION_PERCENT: Final = _local("lesion-pct", "Lesion percent of lung volume")

# (mask, label) of a SEG segment -> its measurements: (concept, metrics.json key, unit)
BY_SEGMENT: Final = {
    ("lung", LUNG_RIGHT): [(VOLUME, "right_lung_volume_cm3", CM3)],
    ("lung", LUNG_LEFT): [(VOLUME, "left_lung_volume_cm3", CM3)],
    ("lesion", LESION_GGO): [
        (VOLUME, "ggo_volume_cm3", CM3),
        (PERCENT_OF_LUNG, "ggo_percent", PERCENT),
    ],
    ("lesion", LESION_CONSOLIDATION): [
        (VOLUME, "consolidation_volume_cm3", CM3),
        (PERCENT_OF_LUNG, "consolidation_percent", PERCENT),
    ],
    ("lesion", LESION_OTHER): [(VOLUME, "other_lesion_volume_cm3", CM3)],
    **{
        ("lobes", label): [
            (PERCENT_OF_LOBE, f"lesion_percent_{lobe}", PERCENT),
            (LOBE_SCORE, f"ai_score_{lobe}", SCORE),
        ]
        for lobe, label in LOBE_LABELS.items()
    },
}
TOTALS: Final = (
    (LUNG_VOLUME, "lung_volume_cm3", CM3),
    (LESION_VOLUME, "lesion_volume_cm3", CM3),
    (LESION_PERCENT, "lesion_percent", PERCENT),
    (AI_CT_SCORE, "ai_ct_score", SCORE),
)


def _measurements(
    metrics: dict[str, Any],
    wanted,
    sites: list[hd.sr.FindingSite] | None = None,  # noqa: ANN001
) -> list[hd.sr.Measurement]:
    """The wanted metrics that the scan has (not None, finite: an empty lung gives NaN)."""
    return [
        hd.sr.Measurement(name=name, value=float(metrics[key]), unit=unit, finding_sites=sites)
        for name, key, unit in wanted
        if metrics.get(key) is not None and math.isfinite(float(metrics[key]))
    ]


def build(
    seg: hd.seg.Segmentation,
    sources: list[Dataset],
    metrics: dict[str, Any],
    software_version: str,
) -> hd.sr.Comprehensive3DSR:
    """The scan's TID 1500 report; ``sources`` are the SEG's source headers (its evidence)."""
    algorithm = hd.sr.AlgorithmIdentification(name="serialct", version=software_version)
    groups: list[Any] = []
    by_name = {s.name: s for s in SEGMENTS}
    for item in seg.SegmentSequence:
        segment = by_name[item.SegmentLabel]
        site = [hd.sr.FindingSite(anatomic_location=segment.kind, laterality=segment.laterality)]
        measured = _measurements(
            metrics, BY_SEGMENT[segment.mask, segment.label], site if segment.laterality else None
        )
        if not measured:
            continue
        groups.append(
            hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(
                    uid=item.TrackingUID, identifier=item.SegmentLabel
                ),
                referenced_segment=hd.sr.ReferencedSegment.from_segmentation(
                    seg, int(item.SegmentNumber)
                ),
                finding_type=segment.kind,
                algorithm_id=algorithm,
                measurements=measured,
            )
        )
    totals = _measurements(metrics, TOTALS)
    if totals:
        groups.append(
            hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(
                    uid=hd.UID(), identifier="Scan totals"
                ),
                algorithm_id=algorithm,
                measurements=totals,
            )
        )
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=DEVICE_UID, name="serialct", manufacturer_name="serialct"
        ),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=CT_CHEST,
        imaging_measurements=groups,
    )
    return hd.sr.Comprehensive3DSR(
        evidence=[seg, *sources],
        content=report,
        series_instance_uid=hd.UID(),
        series_number=SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="serialct",
        series_description=SERIES_DESCRIPTION,
        software_versions=software_version,
        coding_schemes=[
            hd.coding_schemes.CodingSchemeIdentificationItem(
                LOCAL_SCHEME, name="serialct local concepts", responsible_organization="serialct"
            )
        ],
    )

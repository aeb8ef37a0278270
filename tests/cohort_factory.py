"""Synthetic cohorts for the statistics tests, drawn from the paper's Fig. 3 curves (seeded).

``make_cohort`` returns (scans, clinical) DataFrames shaped like ``tables/scans.tsv`` and the
clinical sheet; percent lesion follows the paper's cubic fits through the origin per group with
multiplicative patient effects and noise, and the CT score follows the inverse of Fig. 2's
quadratic, so the Spearman correlation is high as in the paper.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from serialct.constants import LOBES

# Fig. 3B (percent lesion) and Fig. 3C/3D (GGO / consolidation), cubic through the origin
LESION = {"moderate": (0.413, -0.0148, 0.000127), "severe": (2.89, -0.0912, 0.000794)}
CONSOLIDATION_SHARE = {"moderate": 0.2, "severe": 0.18}
FIG2_QUADRATIC = (-0.27, 0.37, 0.13)  # percent = b0 + b1 s + b2 s^2
START = pd.Timestamp("2020-01-27")


def cubic(b: tuple[float, float, float], x: np.ndarray) -> np.ndarray:
    return b[0] * x + b[1] * x**2 + b[2] * x**3


def score_from_percent(percent: np.ndarray) -> np.ndarray:
    """Invert Fig. 2's quadratic for the CT score."""
    b0, b1, b2 = FIG2_QUADRATIC
    s = (-b1 + np.sqrt(b1 * b1 - 4 * b2 * (b0 - percent))) / (2 * b2)
    return np.clip(s, 0, 25)


def make_cohort(
    n_patients: int = 20, seed: int = 0, center: str = "A", severe_fraction: float = 0.4
) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    scans, clinical = [], []
    n_severe = round(n_patients * severe_fraction)
    for i in range(n_patients):
        pid = f"{center}{i + 1:03d}"
        severity = "severe" if i < n_severe else "moderate"
        onset = START + pd.Timedelta(days=int(rng.integers(0, 20)))
        delay = int(rng.integers(3, 12))
        admission = onset + pd.Timedelta(days=delay)
        stay = int(rng.integers(10, 30)) + (8 if severity == "severe" else 0)
        clinical.append(
            {
                "patient_id": pid,
                "severity": severity,
                "onset_date": onset,
                "admission_date": admission,
                "discharge_date": admission + pd.Timedelta(days=stay),
                "age": float(round(rng.normal(55 if severity == "severe" else 40, 10))),
                "sex": rng.choice(["male", "female"]),
                "hypertension": rng.choice(["yes", "no"], p=[0.2, 0.8]),
                "fever": rng.choice(["yes", "no"], p=[0.85, 0.15]),
                "crp_mg_l": float(rng.lognormal(3.5 if severity == "severe" else 2.0, 0.6)),
            }
        )
        # scans on admission, ~1 and ~2 weeks after, and later follow-ups
        offsets = [int(rng.integers(-1, 2)), int(rng.integers(5, 10)), int(rng.integers(12, 17))]
        offsets += sorted(int(v) for v in rng.integers(20, 40, size=int(rng.integers(1, 4))))
        effect = float(rng.lognormal(0, 0.35))
        lung = float(rng.normal(3500 if severity == "severe" else 4100, 400))
        for j, off in enumerate(offsets):
            day = delay + off
            percent = cubic(LESION[severity], np.array(float(min(day, 45))))
            percent = float(np.clip(percent * effect * rng.lognormal(0, 0.2), 0.01, 95))
            cons = percent * CONSOLIDATION_SHARE[severity] * float(rng.uniform(0.6, 1.4))
            n_lobes = int(np.clip(round(1 + percent / 3 + rng.normal(0, 0.7)), 1, len(LOBES)))
            share = np.zeros(len(LOBES))
            share[rng.choice(len(LOBES), n_lobes, replace=False)] = rng.dirichlet(np.ones(n_lobes))
            lobes = np.clip(percent * share * len(LOBES), 0, 100)
            involved = int((lobes > 0).sum())
            score = score_from_percent(np.array(percent)) + rng.normal(0, 1.0)
            date = admission + pd.Timedelta(days=off)
            scan_lung = lung * float(rng.normal(1, 0.05))
            row = {
                "center": center,
                "patient_id": pid,
                "scan_id": f"S{j + 1:02d}",
                "study_date": date,
                "severity": severity,
                "days_since_onset": float(day),
                "days_since_admission": float(off),
                "lung_volume_cm3": scan_lung,
                "lesion_volume_cm3": percent * scan_lung / 100,
                "ggo_volume_cm3": (percent - cons) * scan_lung / 100,
                "consolidation_volume_cm3": cons * scan_lung / 100,
                "lesion_percent": percent,
                "ggo_percent": percent - cons,
                "consolidation_percent": cons,
                **{
                    f"lesion_percent_{lobe}": float(v) for lobe, v in zip(LOBES, lobes, strict=True)
                },
                "involved_lobes": float(involved),
                "ai_ct_score": float(np.clip(np.round(score + rng.normal(0, 1)), 0, 25)),
                "hellinger": float(np.clip(0.2 + 0.004 * percent + rng.normal(0, 0.02), 0, 1)),
                "iou": float(np.clip(0.8 - 0.006 * percent + rng.normal(0, 0.03), 0, 1)),
                "ct_score": float(np.clip(np.round(score), 0, 25)),
                "qc_status": "ok",
                "reader_involved_lobes": float(np.clip(involved + rng.integers(-1, 2), 0, 5)),
            }
            scans.append(row)
    return pd.DataFrame(scans), pd.DataFrame(clinical)


def write_sheets(scans: pd.DataFrame, clinical: pd.DataFrame, folder) -> tuple:
    """scans.tsv and clinical.tsv as the pipeline writes them (ISO dates); returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    iso = {"date_format": "%Y-%m-%d", "sep": "\t", "index": False}
    scans_path, clinical_path = folder / "scans.tsv", folder / "clinical.tsv"
    scans.to_csv(scans_path, **iso)
    clinical.to_csv(clinical_path, **iso)
    return scans_path, clinical_path

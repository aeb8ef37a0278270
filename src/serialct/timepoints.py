"""Assign the paper's time points (admission, week 1, week 2) to scans.

Per patient (and center), each time point takes the ONE scan whose ``days_since_admission`` lies
inside the time point's window (inclusive) and is nearest its target day; on a tie the earlier
scan wins. A scan gets at most one time point: time points are filled in config order and a scan
already taken is not offered to later ones.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from serialct.constants import TIMEPOINTS

DAY_COLUMN = "days_since_admission"


def assign_timepoints(scans: pd.DataFrame, tp_cfg: dict[str, Any]) -> pd.Series:
    """A string Series aligned to ``scans``: the time point name, or <NA> for other scans.

    ``tp_cfg`` is ``config["timepoints"]``: ``{name: {"target": day, "window": [first, last]}}``.
    """
    result = pd.Series(pd.NA, index=scans.index, dtype="string", name="timepoint")
    if scans.empty:
        return result
    keys = [c for c in ("center", "patient_id") if c in scans.columns]
    names = [n for n in TIMEPOINTS if n in tp_cfg] + [n for n in tp_cfg if n not in TIMEPOINTS]
    days = pd.to_numeric(scans[DAY_COLUMN], errors="coerce")
    groups = scans.groupby(keys, sort=False, dropna=False).groups if keys else {0: scans.index}
    for index in groups.values():
        taken: set[Any] = set()
        patient_days = days.loc[index].dropna()
        for name in names:
            first, last = tp_cfg[name]["window"]
            target = tp_cfg[name]["target"]
            inside = patient_days[
                (patient_days >= first) & (patient_days <= last) & ~patient_days.index.isin(taken)
            ]
            if inside.empty:
                continue
            order = pd.DataFrame({"dist": (inside - target).abs(), "day": inside})
            best = order.sort_values(["dist", "day"], kind="stable").index[0]
            result.loc[best] = name
            taken.add(best)
    return result

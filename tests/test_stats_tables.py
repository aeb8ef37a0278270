"""Tables 1-5: the numbers behind the formatted cells."""

from __future__ import annotations

import numpy as np
from cohort_factory import make_cohort
from scipy import stats

from serialct.config import defaults
from serialct.stats.cohort import prepare_scans
from serialct.stats.describe import format_p, median_iqr
from serialct.stats.tables import table1, table2, table3, table4, table5


def cohort(n: int = 12, seed: int = 5):
    scans, clinical = make_cohort(n, seed=seed)
    return prepare_scans(scans, clinical, defaults()["timepoints"]), clinical


def test_table1_headers_tests_and_derived_rows() -> None:
    scans, clinical = cohort()
    table = table1(clinical, scans).set_index("characteristic")
    n_mod = int((clinical["severity"] == "moderate").sum())
    assert list(table.columns[:4]) == [
        "Total, n=12",
        f"Moderate group, n={n_mod}",
        f"Severe group, n={12 - n_mod}",
        "p",
    ]
    mod, sev = (clinical.loc[clinical["severity"] == g, "age"] for g in ("moderate", "severe"))
    assert table.loc["age", "p"] == format_p(stats.mannwhitneyu(mod, sev).pvalue)
    assert table.loc["age", "Total, n=12"] == median_iqr(clinical["age"])
    yes = clinical["hypertension"] == "yes"
    counts = np.array(
        [
            [(yes & (clinical["severity"] == g)).sum(), (~yes & (clinical["severity"] == g)).sum()]
            for g in ("moderate", "severe")
        ]
    )
    assert table.loc["hypertension", "test"] == "Fisher exact"
    assert table.loc["hypertension", "p"] == format_p(stats.fisher_exact(counts).pvalue)
    assert table.loc["hypertension", "Total, n=12"].startswith(f"{yes.sum()} (")
    assert "  male" in table.index and table.loc["sex", "Total, n=12"] == ""
    per_patient = scans.groupby("patient_id").size()
    assert table.loc["Numbers of chest CT scans", "Total, n=12"] == median_iqr(per_patient)
    assert "Hospitalized period (d)" in table.index
    assert "Period of CT follow-up from symptom onset (d)" in table.index


def test_tables_2_to_5_values() -> None:
    scans, _ = cohort()
    t2 = table2(scans).set_index("variable")
    assert t2.loc["lesion_percent", "n"] == len(scans)
    assert t2.loc["hellinger"].iloc[1] == median_iqr(scans["hellinger"])
    t3 = table3(scans).set_index("variable")
    rho = stats.spearmanr(scans["ct_score"], scans["lesion_percent"]).statistic
    assert t3.loc["ct_score", "Spearman rho"] == f"{rho:.3f}"
    assert t3.loc["reader_involved_lobes", "Spearman rho"] != ""
    t4 = table4(scans)
    assert len(t4) == 3 * 8
    row = t4[(t4["timepoint"] == "On admission") & (t4["variable"] == "lesion_percent")].iloc[0]
    at = scans[scans["timepoint"] == "admission"]
    assert row["n_moderate"] + row["n_severe"] == at["patient_id"].nunique() == 12
    sev = at.loc[at["severity"] == "severe", "lesion_percent"]
    assert row.iloc[3] == median_iqr(sev)
    t5 = table5(scans)
    assert len(t5) == 6
    assert t5.loc[0, "Severe rho"] != "" and t5.loc[1, "Severe rho"] == ""


def test_tables_survive_missing_scores_and_timepoints() -> None:
    scans, clinical = cohort(4, seed=6)
    scans = scans.assign(ct_score=np.nan, reader_involved_lobes=np.nan)
    scans.loc[scans["timepoint"] == "week2", "timepoint"] = None
    t3 = table3(scans)
    assert "reader_involved_lobes" not in set(t3["variable"])
    assert (t3.loc[t3["variable"] == "ct_score", ["Spearman rho", "p"]] == "").all(axis=None)
    t4 = table4(scans)
    week2 = t4[t4["timepoint"] == "2 weeks after admission"]
    assert (week2.iloc[:, 2:5] == "").all(axis=None) and (week2["n_moderate"] == 0).all()
    assert (table5(scans)["Moderate rho"] == "").all()
    assert len(table1(clinical, scans)) > 5

"""The paper's cohort statistics: Tables 1-5, correlations and curve estimation."""

from serialct.stats.cohort import run_cohort_stats

__all__ = ["run_cohort_stats"]

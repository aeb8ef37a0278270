# Resources that grow with each retry (profiles set `retries`): attempt 1 gets base, attempt 2
# twice base, ... A job killed for memory or time comes back with more. Its own file so that
# tests/test_hpc_faults.py retries a failing job with exactly these functions.


def grows(base):
    """Resource that grows with each retry (profiles set retries): base x attempt."""
    return lambda wildcards, attempt: base * attempt


def grows_mb(base):
    """Memory (MB) that grows like grows(base), but never beyond the run's mem_mb cap
    (--resources mem_mb=..., the SLURM profile's packed-job cap: the node size), so that no
    retry asks SLURM for more memory than a node has (serialct.cluster)."""

    def mem_mb(wildcards, attempt):
        cap = workflow.global_resources.get("mem_mb")
        cap = getattr(cap, "value", cap)
        return base * attempt if cap is None else min(base * attempt, int(cap))

    return mem_mb

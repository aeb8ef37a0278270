# Resources that grow with each retry (profiles set `retries`): attempt 1 gets base, attempt 2
# twice base, ... A job killed for memory or time comes back with more. Its own file so that
# tests/test_hpc_faults.py retries a failing job with exactly this function.


def grows(base):
    """Resource that grows with each retry (profiles set retries): base x attempt."""
    return lambda wildcards, attempt: base * attempt

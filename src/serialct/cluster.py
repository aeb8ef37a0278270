"""Before a SLURM run submits anything: does every job fit a node of its partition?

A job that asks for more CPUs, memory or GPUs than any node of its partition has stays PENDING
for ever (reason PartitionConfig, or Resources) unless the site's ``slurm.conf`` rejects it, and
Snakemake waits with it. The largest jobs of this workflow are the packed (group) jobs, which ask
for what Snakemake's caps allow (``--cores``, ``--resources mem_mb=... gpu=...``, set in
``profiles/slurm/config.yaml``), and single jobs, whose memory grows with each retry up to the
``mem_mb`` cap (``grows_mb``). :func:`check` compares them with the partitions' nodes that are up,
as ``sinfo`` reports them, and returns one line per job kind that no node can run, naming what
to change. Not checked: partition time limits, and groups given with ``--groups``.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from typing import Any, Final

SINFO_FORMAT: Final = "%P|%c|%m|%G|%t"  # partition (default *), CPUs, memory MB, gres, state
UNAVAILABLE: Final = ("down", "drain", "fail", "maint", "inval")  # node states that run nothing
SINFO_TIMEOUT_S: Final = 30
README_SECTION: Final = 'README "Running on your cluster"'


@dataclass(frozen=True)
class Node:
    partition: str
    cpus: int
    mem_mb: int
    gpus: int
    default: bool  # in the cluster's default partition


@dataclass(frozen=True)
class Request:
    """What one kind of job asks SLURM for, and where that number is set."""

    what: str  # e.g. "a packed job (group cpu_prepare)"
    partition: str | None  # None: the cluster's default partition
    cpus: int
    mem_mb: int
    gpus: int
    setting: str  # what to change


def _gpus(gres: str) -> int:
    """GPUs in a gres string such as ``gpu:1``, ``gpu:a100:4(S:0-1)``, ``(null)``."""
    total = 0
    for part in gres.split(","):
        fields = part.split("(")[0].split(":")
        if fields[0] == "gpu" and fields[-1].isdigit():
            total += int(fields[-1])
    return total


def parse_sinfo(text: str) -> list[Node]:
    """Nodes that are up, from ``sinfo -h -N -o SINFO_FORMAT`` (a line per node and partition)."""
    nodes = []
    for line in text.splitlines():
        if not line.strip():
            continue
        partition, cpus, mem, gres, state = line.strip().split("|")
        if state.rstrip("*~#!%$@^-").startswith(UNAVAILABLE):
            continue
        nodes.append(
            Node(
                partition.rstrip("*"),
                int(cpus),
                int(mem.rstrip("+")),
                _gpus(gres),
                partition.endswith("*"),
            )
        )
    return nodes


def read_nodes() -> list[Node]:
    """The cluster's nodes, per partition (``sinfo``); RuntimeError when sinfo cannot say."""
    try:
        run = subprocess.run(
            ["sinfo", "-h", "-N", "-o", SINFO_FORMAT],
            capture_output=True, text=True, timeout=SINFO_TIMEOUT_S,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(f"sinfo: {exc}") from exc
    if run.returncode != 0:
        raise RuntimeError(f"sinfo: {run.stderr.strip() or run.returncode}")
    return parse_sinfo(run.stdout)


def check(requests: list[Request], nodes: list[Node]) -> list[str]:
    """One line per request that no node of its partition can ever run."""
    problems = []
    for request in requests:
        pool = [
            n
            for n in nodes
            if (n.partition == request.partition if request.partition else n.default)
        ]
        where = f"partition {request.partition}" if request.partition else "the default partition"
        if not pool:
            problems.append(f"{request.what}: {where} has no node (sinfo); {request.setting}")
            continue
        if any(
            n.cpus >= request.cpus and n.mem_mb >= request.mem_mb and n.gpus >= request.gpus
            for n in pool
        ):
            continue
        largest = max(pool, key=lambda n: (n.gpus >= request.gpus, n.cpus, n.mem_mb))
        problems.append(
            f"{request.what} would ask SLURM for {request.cpus} CPUs, {request.mem_mb} MB"
            + (f", {request.gpus} GPU" if request.gpus else "")
            + f", but the largest node of {where} has {largest.cpus} CPUs, "
            f"{largest.mem_mb} MB, {largest.gpus} GPU: it would wait for ever. "
            f"{request.setting} ({README_SECTION})"
        )
    return problems


def _value(resource: Any) -> Any:
    """A Snakemake resource's plain value: a string given on the command line
    (``--default-resources slurm_partition=X``, evaluated per job) as written; None when a
    function computes it per job."""
    if resource is None:
        return None
    if getattr(resource, "is_evaluable", lambda: False)():
        raw = getattr(resource, "raw", None)
        return raw.strip("'\"") if isinstance(raw, str) else None
    return getattr(resource, "value", resource)


def cap(workflow: Any, name: str) -> int | None:
    """The run's cap on a resource (``_cores`` for --cores, ``mem_mb``, ``gpu``), or None."""
    value = _value(workflow.global_resources.get(name))
    return None if value is None else int(value)


def requests(workflow: Any) -> list[Request]:
    """The largest job each rule of a Snakemake workflow can be part of on the cluster: a packed
    (group) job asks for the run's caps (--cores, --resources mem_mb / gpu), a single job for
    its threads; memory can grow to the mem_mb cap on retries (``grows_mb``). One request per
    partition and size, naming its rules."""
    cores, mem_mb, gpu_cap = cap(workflow, "_cores"), cap(workflow, "mem_mb"), cap(workflow, "gpu")
    sizes: dict[tuple[str | None, int, int], list[str]] = {}
    for rule in workflow.rules:
        if workflow.is_local(rule):
            continue
        gpus = int(_value(rule.resources.get("gpu")) or 0)
        threads = int(_value(rule.resources.get("_cores")) or 1)
        cpus = (cores or threads) if rule.group else min(threads, cores or threads)
        if gpus and rule.group:
            gpus = max(gpus, gpu_cap or 0)
        partition = _value(rule.resources.get("slurm_partition")) or None
        sizes.setdefault((partition, cpus, gpus), []).append(rule.name)
    setting = (
        "Set cores and resources (mem_mb, gpu) in profiles/slurm/config.yaml, or --cores N "
        "--resources mem_mb=M gpu=G, to what one node has"
    )
    return [
        Request(
            f"rule {', '.join(sorted(names))}",
            partition,
            cpus,
            mem_mb or 0,
            gpus,
            setting + ("; config cluster.gpu_partition names the GPU partition" if gpus else ""),
        )
        for (partition, cpus, gpus), names in sorted(sizes.items(), key=str)
    ]

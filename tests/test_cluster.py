"""serialct.cluster: a job that no node of its partition can run is found before submission."""

from __future__ import annotations

from types import SimpleNamespace

from serialct.cluster import Request, check, parse_sinfo, requests

# sinfo -h -N -o "%P|%c|%m|%G": two partitions, the default one marked with *
SINFO = """\
main*|2|20000|(null)|idle
main*|8|64000|(null)|mix
main*|64|512000|(null)|down*
gpu|16|128000|gpu:a100:4(S:0-1)|alloc
gpu|16|128000|gpu:2|idle
gpu|64|512000|gpu:8|drain
"""


def test_parse_sinfo_keeps_the_nodes_that_are_up():
    nodes = parse_sinfo(SINFO)
    assert [(n.partition, n.cpus, n.mem_mb, n.gpus, n.default) for n in nodes] == [
        ("main", 2, 20000, 0, True),
        ("main", 8, 64000, 0, True),
        ("gpu", 16, 128000, 4, False),
        ("gpu", 16, 128000, 2, False),
    ]


def _request(partition=None, cpus=4, mem_mb=16000, gpus=0) -> Request:
    return Request("rule x", partition, cpus, mem_mb, gpus, "set cores")


def test_a_job_that_fits_one_node_passes():
    nodes = parse_sinfo(SINFO)
    assert check([_request(cpus=8, mem_mb=64000), _request("gpu", 16, 100000, 4)], nodes) == []


def test_too_large_for_every_node_names_the_setting():
    nodes = parse_sinfo(SINFO)
    (line,) = check([_request(cpus=10, mem_mb=60000)], nodes)
    assert "10 CPUs, 60000 MB" in line
    assert "largest node of the default partition has 8 CPUs" in line
    assert "set cores" in line and "Running on your cluster" in line
    # CPUs of one node and memory of another do not add up to a node that fits
    assert check([_request(cpus=8, mem_mb=100000)], nodes)


def test_gpu_jobs_need_a_gpu_node_of_their_partition():
    nodes = parse_sinfo(SINFO)
    (line,) = check([_request(gpus=1)], nodes)  # the default partition has no GPU
    assert "1 GPU" in line and "0 GPU" in line
    assert check([_request("gpu", gpus=5)], nodes)
    (line,) = check([_request("gpus", gpus=1)], nodes)
    assert "partition gpus has no node" in line


def test_requests_from_the_rules_and_the_caps():
    """Packed rules ask for the caps; single rules for their threads (at most --cores); the
    lesion rule's GPU and partition come along; local rules never reach SLURM."""
    from snakemake.resources import Resources

    # as --default-resources gives it: a string evaluated per job
    partition = Resources.parse(["slurm_partition=main"], allow_expressions=True)
    rules = [
        SimpleNamespace(name="convert", group="cpu_prepare", resources={"_cores": 1, **partition}),
        SimpleNamespace(name="index", group=None, resources={"_cores": 4}),
        SimpleNamespace(
            name="lesion",
            group="gpu_scan",
            resources={"_cores": 2, "gpu": 1, "slurm_partition": "gpu"},
        ),
        SimpleNamespace(name="all", group=None, resources={"_cores": 1}),
    ]
    caps = {"_cores": 3, "mem_mb": 12000, "gpu": 1}
    workflow = SimpleNamespace(
        rules=rules,
        global_resources={k: SimpleNamespace(value=v) for k, v in caps.items()},
        is_local=lambda rule: rule.name == "all",
    )
    found = {r.what: (r.partition, r.cpus, r.mem_mb, r.gpus) for r in requests(workflow)}
    assert found == {
        "rule convert": ("main", 3, 12000, 0),
        "rule index": (None, 3, 12000, 0),
        "rule lesion": ("gpu", 3, 12000, 1),
    }

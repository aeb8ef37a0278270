# Before a SLURM run submits a job: every job must fit a node of its partition (serialct.cluster),
# else the run stops at once with what to change, instead of waiting for ever on a PENDING job.


onstart:
    plugin = workflow.executor_plugin
    if plugin is not None and plugin.name == "slurm" and config["cluster"]["check_nodes"]:
        from snakemake.exceptions import WorkflowError

        from serialct import cluster

        if cluster.cap(workflow, "mem_mb") is None:
            raise WorkflowError(
                "a SLURM run without a memory cap: packed jobs would ask for the sum of their "
                "members' memory; set resources mem_mb in profiles/slurm/config.yaml (or "
                '--resources mem_mb=M) to what one node has (README "Running on your cluster")'
            )
        try:
            nodes = cluster.read_nodes()
        except RuntimeError as exc:
            logger.warning(f"cluster check skipped (config cluster.check_nodes): {exc}")
        else:
            problems = cluster.check(cluster.requests(workflow), nodes)
            if problems:
                raise WorkflowError("no node can ever run this; " + " | ".join(problems))
            logger.info(f"cluster check: every job fits a node ({len(nodes)} node entries)")

"""The rules of SPEC §3 that relate fields to each other; each issue names the field it is about."""

from __future__ import annotations

from graphlib import CycleError, TopologicalSorter

from trace_core import naming
from trace_core.dag.config import Activation, DagConfig, ExecutionStrategy, Job, Runtime, UpdateStrategy
from trace_core.dag.errors import ConfigIssue
from trace_core.dag.operators import DISPATCHER_OPERATORS, config_problems


def check_dag(config: DagConfig) -> list[ConfigIssue]:
    """Every cross-field problem of a structurally valid config (empty when it is valid)."""
    issues: list[ConfigIssue] = []
    issues += _check_names(config)
    issues += _check_wiring(config)
    issues += _check_jobs(config)
    issues += _check_publish(config)
    issues += _check_operators(config)
    if not any(issue.path[-1] == "job" for issue in issues):
        issues += _check_acyclic(config)
    return issues


def _check_names(config: DagConfig) -> list[ConfigIssue]:
    issues = [
        ConfigIssue(("jobs", name), f"job name {name!r} must match {naming.JOB_NAME.pattern}")
        for name in config.jobs
        if not naming.JOB_NAME.match(name)
    ]
    issues += [
        ConfigIssue(("worker_pools", name), f"worker pool name {name!r} must match {naming.POOL_NAME.pattern}")
        for name in config.worker_pools
        if not naming.POOL_NAME.match(name)
    ]
    issues += [
        ConfigIssue(("worker_pools", name), "a worker pool needs at least one slot")
        for name, slots in config.worker_pools.items()
        if not slots
    ]
    return issues


def _check_wiring(config: DagConfig) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    for name, job in config.jobs.items():
        for index, item in enumerate(job.inputs):
            ref = item.from_
            if ref.job is None:
                continue  # cross-DAG input: existence and read access are checked at deploy
            path = ("jobs", name, "inputs", index, "from")
            upstream = config.jobs.get(ref.job)
            if upstream is None:
                known = ", ".join(sorted(config.jobs))
                issues.append(ConfigIssue((*path, "job"), f"no job {ref.job!r} in this DAG (jobs: {known})"))
            elif ref.job == name:
                issues.append(ConfigIssue((*path, "job"), f"job {name!r} cannot read its own output"))
            elif ref.output >= upstream.output_count:
                issues.append(
                    ConfigIssue(
                        (*path, "output"),
                        f"output {ref.output} is out of range: job {ref.job!r} has "
                        f"{upstream.output_count} output(s), indexed from 0",
                    )
                )
    return issues


# Operators only the platform schedules: a DAG naming one gets an error saying where it comes from.
PLATFORM_OPERATORS = {
    "duckdb_query": "duckdb_query runs the Query Service's batch queries (POST /v1/query with mode: batch), "
    "not DAG jobs; use operator: sql for a SQL transform",
}


def _check_jobs(config: DagConfig) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    for name, job in config.jobs.items():
        path = ("jobs", name)
        if job.operator in PLATFORM_OPERATORS:
            issues.append(ConfigIssue((*path, "operator"), PLATFORM_OPERATORS[job.operator]))
        if job.activation is Activation.SOURCE and job.inputs:
            issues.append(ConfigIssue((*path, "inputs"), "a source job has no inputs"))
        if job.activation is Activation.REACTIVE and not job.inputs:
            issues.append(
                ConfigIssue((*path, "inputs"), "a reactive job needs at least one input (or activation: source)")
            )
        if job.worker_pool is not None and job.worker_pool not in config.worker_pools:
            known = ", ".join(sorted(config.worker_pools)) or "none defined"
            issues.append(
                ConfigIssue((*path, "worker_pool"), f"no worker pool {job.worker_pool!r} (worker_pools: {known})")
            )
        if job.update_strategy is UpdateStrategy.APPEND:
            if not job.outputs:
                issues.append(
                    ConfigIssue(
                        (*path, "update_strategy"),
                        "update_strategy append needs a stored output with unique_key to dedupe on",
                    )
                )
            issues += [
                ConfigIssue((*path, "outputs", index, "unique_key"), "update_strategy append requires unique_key")
                for index, output in enumerate(job.outputs)
                if not output.unique_key
            ]
    return issues


def _check_publish(config: DagConfig) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    names: dict[str, int] = {}
    outputs: dict[tuple[str, int], int] = {}
    for index, entry in enumerate(config.publish):
        path = ("publish", index)
        job = config.jobs.get(entry.job)
        if job is None:
            issues.append(ConfigIssue((*path, "job"), f"no job {entry.job!r} in this DAG"))
        elif entry.output >= job.output_count:
            issues.append(
                ConfigIssue(
                    (*path, "output"),
                    f"output {entry.output} is out of range: job {entry.job!r} has {job.output_count} output(s)",
                )
            )
        elif not job.outputs:
            issues.append(
                ConfigIssue((*path, "job"), f"job {entry.job!r} has no stored outputs (events only): nothing to query")
            )
        if entry.dataset in names:
            issues.append(
                ConfigIssue(
                    (*path, "dataset"),
                    f"dataset {entry.dataset!r} is already published by publish.{names[entry.dataset]}",
                )
            )
        else:
            names[entry.dataset] = index
        key = (entry.job, entry.output)
        if key in outputs:
            issues.append(
                ConfigIssue(
                    (*path, "output"),
                    f"output {entry.output} of job {entry.job!r} is already published by publish.{outputs[key]}",
                )
            )
        else:
            outputs[key] = index
    return issues


def _check_acyclic(config: DagConfig) -> list[ConfigIssue]:
    graph = {name: config.upstream_jobs(name) for name in config.jobs}
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as error:
        # each node of the reported cycle is an input of the next: it reads as data flows
        cycle: list[str] = error.args[1]
        return [ConfigIssue(("jobs", cycle[1], "inputs"), "the inputs form a cycle: " + " -> ".join(cycle))]
    return []


def _check_operators(config: DagConfig) -> list[ConfigIssue]:
    """Built-in operators: their config (`trace_core.dag.operators`) and what each needs of its job."""
    issues: list[ConfigIssue] = []
    for name, job in config.jobs.items():
        path = ("jobs", name)
        problems = config_problems(job.operator, job.config)
        issues += [ConfigIssue((*path, "config", *where), message) for where, message in problems]
        if job.operator == "block_follower":
            if job.activation is not Activation.SOURCE:
                issues.append(ConfigIssue((*path, "activation"), "block_follower is a source: set activation: source"))
            if job.runtime != Runtime.ECS_PYTHON.value:
                issues.append(
                    ConfigIssue((*path, "runtime"), "block_follower runs for as long as it follows: use ecs_python")
                )
            slots = config.worker_pools.get(job.worker_pool or "", [])
            every_slot_sets_url = bool(slots) and all("RPC_URL" in (s.env | s.secret_env) for s in slots)
            if "rpc_url" not in job.config and not every_slot_sets_url:
                issues.append(
                    ConfigIssue(
                        (*path, "config", "rpc_url"),
                        "block_follower needs the node's JSON-RPC URL: set config.rpc_url, or run the job in a "
                        "worker_pool whose every slot sets RPC_URL",
                    )
                )
        if job.operator in DISPATCHER_OPERATORS:
            issues += _check_dispatcher_operator(path, job)
        if job.operator == "range_aggregator":
            # the manifests depend on the order blocks arrive in: one input, one task at a time, in event order
            if len(job.inputs) > 1:
                issues.append(ConfigIssue((*path, "inputs"), "range_aggregator reads one ordered input"))
            if job.execution_strategy != ExecutionStrategy.PER_UPDATE.value:
                issues.append(
                    ConfigIssue(
                        (*path, "execution_strategy"),
                        "range_aggregator consumes blocks in order: it runs PerUpdate",
                    )
                )
            if job.scaling.max_concurrency != 1:
                issues.append(
                    ConfigIssue(
                        (*path, "scaling", "max_concurrency"),
                        "range_aggregator consumes blocks in order: max_concurrency must be 1",
                    )
                )
    return issues


def _check_dispatcher_operator(path: tuple[str, ...], job: Job) -> list[ConfigIssue]:
    """An operator the dispatcher runs itself: reactive, events only, and nothing that picks where it runs."""
    where = f"{job.operator} runs inside the dispatcher"
    issues = []
    if "runtime" in job.model_fields_set:
        issues.append(ConfigIssue((*path, "runtime"), f"{where}, not on a worker runtime: remove runtime"))
    if job.worker_pool is not None:
        issues.append(ConfigIssue((*path, "worker_pool"), f"{where} and leases no slot: remove worker_pool"))
    if job.activation is Activation.SOURCE:
        message = f"{where} on its input events: it cannot be a source (remove activation)"
        issues.append(ConfigIssue((*path, "activation"), message))
    if job.outputs:
        issues.append(
            ConfigIssue((*path, "outputs"), f"{job.operator} emits events only: remove outputs (it stores no rows)")
        )
    return issues

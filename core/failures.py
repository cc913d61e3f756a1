"""Why did a job fail, in words a user can act on: ``error_code``, ``error_category``, ``error_hint``.

Why here: ``/job-info``, ``/status`` and ``/jobs`` all say it, so the rules live once, without
Prefect. Each rule is one failure a user can do something about (a missing image, a bad
config, memory...). The texts come from three places, read in order of trust: Prefect's state
message (the platform's own words), the result file's ``error``/``traceback`` (the simulator's),
and the tail of the job log. The first place any rule matches decides; within it, the first
rule in the table wins. A failure no rule knows is ``simulator_error``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_TEXT = 16_384  # of each source, from its end (the cause is usually last)


@dataclass(frozen=True)
class Rule:
    code: str
    category: str
    hint: str
    pattern: re.Pattern[str]


def _rule(code: str, category: str, hint: str, *patterns: str) -> Rule:
    return Rule(code, category, hint, re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE))


RULES: tuple[Rule, ...] = (
    _rule("image_missing", "image", "The simulator image is not on the host (images are never pulled): pick a runtime "
          "version listed by /job-images/versions, or build/load the image on that host.",
          r"SimulatorImageMissing", r"is not present on host", r"No such image", r"pull access denied", r"manifest unknown"),
    _rule("image_refused", "image", "The host does not allow this image or tag: choose one from the host's allow-list "
          "(/job-images/versions) or ask an operator to add its repository.",
          r"SimulatorImageRefused", r"is not allowed on host", r"allow-list", r"names no simulator_image", r"Image tag must not"),
    _rule("dataset_missing", "data", "The dataset the config names is missing or incomplete: build or upload it "
          "(GET /datasets lists them) or fix the config's dataset name.",
          r"no dataset '", r"datasets/\S+/schema\.json does not exist", r"DatasetError", r"energy_simulation CSV .* is missing",
          r"dataset \S+ (?:not found|does not exist)", r"FileNotFoundError.*datasets/"),
    _rule("config_invalid", "config", "The experiment config was refused: fix the field the message names "
          "(GET /job-resolved-config/{id} shows what ran) and launch again.",
          r"ExperimentConfigError", r"\bConfigError\b", r"Invalid YAML", r"unknown algorithm", r"unknown parameter for",
          r"config(?:uration)? (?:is )?invalid", r"yaml\.(?:scanner|parser)\.\w+Error"),
    # The supervisor's own verdicts (core/job_limits.py: ``error_code=<code>: ...``) come first.
    # Slurm hosts' verdicts (core/states.py SLURM_FAILURES, docs/slurm.md)
    _rule("node_fail", "infrastructure", "Slurm reports the compute node failed under the job: requeue it "
          "(POST /ops/jobs/{id}/requeue); if it keeps happening, tell the cluster's operators.", r"error_code=node_fail\b"),
    _rule("slurm_cancelled", "operator", "The job was cancelled in Slurm by someone other than the platform (scancel on "
          "the cluster, an administrator, a revoked reservation); requeue it if that was not meant.", r"error_code=slurm_cancelled\b"),
    _rule("slurm_job_lost", "infrastructure", "Slurm no longer knows the job and it left no exit code (the controller "
          "restarted or purged it): requeue it.", r"error_code=slurm_job_lost\b"),
    _rule("artifact_sync_failed", "infrastructure", "The job's files could not be copied to or from the Slurm host's login "
          "node (ssh, rsync/tar, slurm.ssh.remote_root): the message names the copy; fix it and requeue the job.",
          r"error_code=artifact_sync_failed\b"),
    _rule("preempted", "infrastructure", "Slurm preempted the job for a higher-priority one: requeue it, or use a "
          "partition/QOS without preemption.", r"error_code=preempted\b"),
    _rule("pids_limit", "resources", "The job stayed at its process limit (a fork bomb or a runaway pool): lower its "
          "parallelism, or ask for more (resources.pids) within the host's limit.", r"error_code=pids_limit\b"),
    _rule("disk_limit", "resources", "The job's folder grew over its disk limit: write less (checkpoints, exports), or ask "
          "for more (resources.disk_bytes) within the host's limit.", r"error_code=disk_limit\b"),
    _rule("out_of_memory", "resources", "The job ran out of memory: ask for more (resources.memory), or use a smaller "
          "dataset, batch or model.",
          r"error_code=out_of_memory\b", r"OOMKilled", r"out of memory", r"\bMemoryError\b", r"Cannot allocate memory", r"std::bad_alloc", r"oom-kill"),
    _rule("timed_out", "time", "The job hit a time limit: ask for a longer walltime, or run fewer episodes/steps.",
          r"\bTimeoutError\b", r"timed out", r"walltime", r"DUE TO TIME LIMIT", r"deadline exceeded"),
    _rule("host_lost", "infrastructure", "The host or its worker stopped answering while the job ran: requeue it "
          "(POST /ops/jobs/{id}/requeue); if the host came back with results, POST /ops/jobs/{id}/recover.",
          r"error_code=host_lost\b", r"No heartbeat", r"heartbeat", r"zombie", r"worker or host died", r"lost the simulator's container",
          r"removed before it ended"),
    _rule("killed", "resources", "The job was killed (SIGKILL, exit 137) without an out-of-memory mark: an operator, the "
          "engine or the host's limits ended it; requeue it, and check its resource limits.",
          r"(?:exit(?:ed)?|status) (?:with )?(?:status )?code (?:137|-9)\b", r"\bSIGKILL\b", r"signal 9\b", r"^Killed$"),
    _rule("stopped", "user", "The job was stopped on request; its files are kept. Requeue it to run it again.",
          r"Stopped on request", r"Stop requested", r"Cancelled to requeue", r"Canceled from the queue", r"Deleted through the OPEVA API"),
    _rule("marked_failed", "operator", "An operator marked the job failed; the message says why.", r"^Marked failed"),
)
GENERIC = Rule("simulator_error", "simulator", "The simulator failed: read the end of its log (GET /logs-chunk/{id}?tail_lines=100) "
               "and the result's error and traceback (GET /result/{id}).", re.compile(r"$^"))
HOST_LOST = next(r for r in RULES if r.code == "host_lost")
STOPPED = next(r for r in RULES if r.code == "stopped")


@dataclass(frozen=True)
class Failure:
    error_code: str
    error_category: str
    error_hint: str
    error_summary: str | None = None  # the line that matched

    def fields(self) -> dict[str, str | None]:
        return {"error_code": self.error_code, "error_category": self.error_category, "error_hint": self.error_hint}


def _matching_line(text: str, rule: Rule) -> str | None:
    for line in text.splitlines():
        if rule.pattern.search(line):
            return line.strip()[:300]
    return None


def classify(*, status: str, state_type: str | None, state_message: str | None = None, result_error: str | None = None,
             log_tail: str | None = None) -> Failure | None:
    """The failure of a job in ``status`` (None unless it failed, was stopped or canceled)."""
    if status not in ("failed", "stopped", "canceled"):
        return None
    for text in (state_message, result_error, log_tail):
        if not text:
            continue
        text = text[-MAX_TEXT:]
        for rule in RULES:
            line = _matching_line(text, rule)
            if line is not None:
                return Failure(rule.code, rule.category, rule.hint, line)
    if status in ("stopped", "canceled"):
        return Failure(STOPPED.code, STOPPED.category, STOPPED.hint, state_message)
    if state_type == "CRASHED":
        return Failure(HOST_LOST.code, HOST_LOST.category, HOST_LOST.hint, state_message)
    return Failure(GENERIC.code, GENERIC.category, GENERIC.hint, (state_message or "")[:300] or None)


def result_error_text(result: object) -> str | None:
    """``error`` and ``traceback`` of a result file (upstream's failed result), as one text."""
    if not isinstance(result, dict):
        return None
    parts = [result.get(k) for k in ("error", "traceback", "message") if isinstance(result.get(k), str)]
    return "\n".join(parts) if parts and (result.get("status") in ("failed", "error") or result.get("error")) else None

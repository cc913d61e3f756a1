"""A simulation job on a Slurm host: submit the batch job, follow it, stop it.

The flow run (on the host's process pool, its worker on the submit node) stays the supervisor
as on Docker hosts: it submits with ``sbatch --parsable`` (core/slurm_script.py writes the
script), follows the job with ``scontrol``/``sacct`` through :class:`SlurmSource` (an
``OutputSource`` for flows/supervise.mirror, which tails Slurm's output file and the simulator's
own log into Prefect and platform.log), keeps ``job_info.json``'s ``slurm_*`` fields current, and
on a stop (Prefect's runner sends the flow SIGTERM) sends the job TERM (``scancel --signal=TERM``),
waits the host's grace, then ``scancel``. Slurm's states become OPEVA's in core/states.py.
On a host with ``submit: ssh://...`` every Slurm command goes over ssh (core/slurm_transport.py)
and the job's files are copied to and from the login node (flows/slurm_remote.py).
"""

from __future__ import annotations

import logging
import os
import queue
from collections import deque
import signal
import threading
import time
from pathlib import Path
from typing import Any

from core import slurm
from core.hosts import Host, job_limits
from core.containers import RUNTIME_IMAGE_ENV
from core.job_io import FileFollower, chown_job_dir
from core.layout import DataRoot, JobPaths, write_json_atomic
from core.settings import PROJECT_ROOT
from core.slurm_transport import LOCAL, Transport
from core.slurm_script import JobScript, output_file, render, sbatch_options, sif_path
from core.slurm_watch import Watch, read_watch, resumable, write_watch
from core.states import slurm_status
from flows.phase import mark_phase
from flows.slurm_remote import ERROR_CODE as SYNC_FAILED, LogSync, inputs_of, remote_job, uploader
from flows.supervise import LINE_QUEUE, MirrorLimits, SupervisedRun, contract_env, mirror, prefect_log_backlog

POLL_SECONDS = 1.0
FORGOTTEN_POLLS = 3  # Slurm forgot the job this many polls in a row: it is lost, not running


class _CountingQueue(queue.Queue):
    """A line queue that counts the lines taken (the mirror is its only reader)."""

    taken = 0

    def _get(self):  # called under the queue's lock
        self.taken += 1
        return super()._get()


class SlurmSource:
    """A Slurm job as the mirror sees it: its output file's lines, ended when Slurm says so."""

    def __init__(self, slurm_job_id: str, job: JobPaths, on_state=None, start_offset: int = 0, via: Transport = LOCAL,
                 sync: LogSync | None = None) -> None:
        self.slurm_job_id = slurm_job_id
        self.via, self.sync = via, sync  # an ssh host: where Slurm is, and how its files come back
        self.lines = _CountingQueue(maxsize=LINE_QUEUE)
        self.record: dict[str, str] | None = {}
        self.state: str | None = "PENDING"
        self.exit_code: int | None = None
        self._ended = threading.Event()
        self._done_reading = threading.Event()
        self._out = FileFollower(job.dir, Path(output_file(str(job.dir))).relative_to(job.dir))
        self._out.offset = start_offset  # a resumed watch: what an earlier attempt mirrored is not read again
        self._marks: deque[tuple[int, int]] = deque([(0, start_offset)])  # (lines put so far, offset after them)
        self._marks_lock = threading.Lock()
        self._put = 0
        self._on_state = on_state
        threading.Thread(target=self._follow, daemon=True, name="slurm-follow").start()

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    def poll(self) -> None:
        """Read Slurm's view once; a job Slurm forgot FORGOTTEN_POLLS times in a row has ended."""
        forgotten = 0
        while True:
            try:
                record = slurm.job_record(self.slurm_job_id, self.via)
            except slurm.SlurmError as exc:  # the controller is away: keep the last state, try again
                logging.getLogger("opeva.slurm").warning("%s", exc)
                return
            if record is not None or forgotten + 1 >= FORGOTTEN_POLLS:
                break
            forgotten += 1
            time.sleep(POLL_SECONDS)
        state = (record or {}).get("JobState") if record else None
        changed = state != self.state or record != self.record
        self.record, self.state = record, state
        if changed and self._on_state is not None:
            self._on_state(self)
        status, _, _ = slurm_status(state)
        if status not in ("dispatched", "running"):
            code, _, sig = ((record or {}).get("ExitCode") or "").partition(":")
            self.exit_code = int(code) if code.isdigit() else None
            if self.exit_code == 0 and sig.isdigit() and int(sig):
                self.exit_code = 128 + int(sig)
            if self.sync is not None and not self._ended.is_set():
                self.sync(True)  # the whole folder back before the mirror's last read
            self._ended.set()
        elif self.sync is not None:
            self.sync(False)

    def mirrored_offset(self) -> int | None:
        """The output file's offset after the last line the mirror took, or None mid-batch. The
        mirror calls it after writing a round, so taken means written: a resumed watch starts
        there and shows no line twice (a flood's partial batch excepted: it repeats that batch)."""
        taken = self.lines.taken
        with self._marks_lock:
            while len(self._marks) > 1 and self._marks[1][0] <= taken:
                self._marks.popleft()
            count, offset = self._marks[0]
        return offset if count <= taken else None

    def _follow(self) -> None:
        while True:
            final = self._ended.is_set()
            lines, more = self._out.read_lines(final=final)
            offset = self._out.resume_offset()
            self._put += len(lines)
            if lines and offset is not None:
                with self._marks_lock:
                    self._marks.append((self._put, offset))
            for line in lines:
                self.lines.put(line)
            if final and not more:
                self.lines.put(None)
                return
            if not more:
                time.sleep(POLL_SECONDS / 4)


def _slurm_fields(source: SlurmSource, req: slurm.Request) -> dict[str, Any]:
    rec = source.record or {}
    status, _, _ = slurm_status(source.state)
    return {
        "executor": "slurm", "slurm_job_id": source.slurm_job_id, "slurm_state": source.state or "UNKNOWN (forgotten by Slurm)",
        "slurm_reason": rec.get("Reason") if rec.get("Reason") not in (None, "None") else None,
        "slurm_partition": rec.get("Partition") or req.partition,
        "slurm_node_list": rec.get("NodeList") if rec.get("NodeList") not in (None, "(null)", "None assigned", "") else None,
        "slurm_nodes": int(rec["NumNodes"]) if (rec.get("NumNodes") or "").isdigit() else None,  # a count, as energaize_ui reads it
        "slurm_cpus": int(rec["NumCPUs"]) if (rec.get("NumCPUs") or "").isdigit() else req.cpus_per_task,
        "slurm_gpus": req.gpus, "slurm_time_limit": slurm.format_time(req.time_seconds), "slurm_mem_gb": req.mem_gb,
        "slurm_status": status,
    }


def run_on_slurm(host: Host, job: JobPaths, storage: DataRoot, cfg_file: Path, name: str, sim_image: str | None,
                 cmd: list[str] | None, info: dict[str, Any], logger, on_progress, cancelled: threading.Event,
                 options: dict[str, Any] | None, job_variables: dict[str, Any]) -> SupervisedRun:
    """Submit, follow to the end (or a stop), and return what the mirror saw; ``run.error_code``
    carries a Slurm failure's cause (core/states.slurm_status)."""
    settings = host.slurm
    assert settings is not None
    via, remote = settings.transport(), remote_job(host, job, storage)
    req = slurm.resolve(settings, options, slurm.partitions(via))
    bounds = job_limits(host, job_variables)
    spec = _job_script(host, job, storage, cfg_file, name, sim_image, cmd, bounds)
    as_root = via.user == "root" if via.remote else os.geteuid() == 0
    script = render(settings, req, spec)
    (job.dir / "logs").mkdir(exist_ok=True)
    write_json_atomic(job.dir / "slurm_job.sh.json", {"script": script})  # what was submitted, for the record
    chown_job_dir(job, host.run_as)
    owner = host.run_as if as_root and settings.runtime != "docker" else None  # the uid sbatch --uid runs the job as
    upload = uploader(remote, lambda: inputs_of(storage, cfg_file, info, options), owner, logger)
    watch, resumed = _resume_or_submit(job, script, sbatch_options(req, spec, as_root=as_root, runtime=settings.runtime), logger, via,
                                       upload)
    slurm_id = watch.slurm_job_id
    if not resumed:
        logger.info("[INFO] Job %s on Slurm host %s: Slurm job %s, partition %s, time %s, %s CPU(s), %g GB, %s GPU(s), runtime %s",
                    job.job_id, host.name, slurm_id, req.partition, slurm.format_time(req.time_seconds), req.cpus_per_task,
                    req.mem_gb, req.gpus, settings.runtime)
    info.update(executor="slurm", slurm_job_id=slurm_id, slurm_partition=req.partition)
    write_json_atomic(job.job_info_file, info)
    phase = {"now": "setup"}

    def on_state(src: SlurmSource) -> None:
        info.update(_slurm_fields(src, req))
        write_json_atomic(job.job_info_file, info)
        chown_job_dir(job, host.run_as, only=job.job_info_file)
        want = {"dispatched": "dispatched", "running": "running"}.get(info["slurm_status"])
        if want and want != phase["now"]:
            phase["now"] = want
            mark_phase(want)
            if want == "dispatched" and info.get("slurm_reason"):
                logger.info("[INFO] Slurm job %s is waiting: %s", slurm_id, info["slurm_reason"])

    sync = LogSync(remote, job) if remote is not None else None
    source = SlurmSource(slurm_id, job, on_state, start_offset=watch.output_offset, via=via, sync=sync)
    stopping = {"asked": False}
    checkpoint = _Checkpoint(job, watch, source)

    def should_stop() -> bool:
        source.poll()
        if cancelled.is_set() and not stopping["asked"]:
            stopping["asked"] = True
            _stop(slurm_id, settings.stop_grace_seconds, source, logger, via)
        return False  # the mirror goes on until Slurm says the job ended, so the last lines are kept

    def polled_should_stop() -> bool:
        now = time.monotonic()
        if now - polled["at"] >= POLL_SECONDS or cancelled.is_set():
            polled["at"] = now
            return should_stop()
        return False

    polled = {"at": 0.0}
    previous = _on_sigterm(cancelled)
    try:
        run = mirror(source, job=job, logger=logger, on_progress=on_progress, should_stop=polled_should_stop,
                     limits=MirrorLimits.of(bounds), backlog=prefect_log_backlog, log_offset=watch.log_offset, checkpoint=checkpoint)
    finally:
        if not source.ended:  # the mirror left early (a limit, an error): the job must not run on unwatched
            _stop(slurm_id, 0, source, logger, via)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if source.ended:
        checkpoint.end()
    if sync is not None and sync.failed:  # the job's outputs stayed on the login node
        logger.error("[ERROR] %s", sync.failed)
        run.error_code, run.error_detail = SYNC_FAILED, sync.failed
    if stopping["asked"]:  # a stop stays a stop (Prefect's runner records Cancelled anyway); a failed copy is in the logs and job_info
        _record_cancelled(logger)
    return _finish(run, source, req, stopping["asked"], info, job)


def _resume_or_submit(job: JobPaths, script: str, options: list[str], logger, via: Transport, upload) -> tuple[Watch, bool]:
    """The Slurm job an earlier attempt of this run submitted and no watcher saw end (followed
    from its checkpoint: core/slurm_watch.py), else a new one. (watch, resumed)."""
    earlier = read_watch(job.dir)
    try:
        record = slurm.job_record(earlier.slurm_job_id, via) if earlier else None
    except slurm.SlurmError:
        record = None
    if earlier is not None and resumable(earlier, record, job.job_id):
        logger.info("[INFO] Re-attached to Slurm job %s (%s), submitted by an earlier attempt of this run: following it from "
                    "byte %d of its output and byte %d of its log", earlier.slurm_job_id, (record or {}).get("JobState"),
                    earlier.output_offset, earlier.log_offset)
        return earlier, True
    if earlier is not None and not earlier.ended:
        logger.warning("[WARNING] Slurm job %s of an earlier attempt is not this run's or Slurm forgot it: submitting anew",
                       earlier.slurm_job_id)
    upload()
    watch = Watch(slurm_job_id=slurm.submit(script, options, via))
    write_watch(job.dir, watch)
    return watch, False


class _Checkpoint:
    """Writes how far the watch got (core/slurm_watch.py) after each mirrored round that moved it
    (one small atomic file write), and once more when Slurm said the job ended."""

    def __init__(self, job: JobPaths, watch: Watch, source: SlurmSource) -> None:
        self.job, self.watch, self.source = job, watch, source

    def __call__(self, log_offset: int | None) -> None:
        output = self.source.mirrored_offset()
        if output is None or log_offset is None or (output, log_offset) == (self.watch.output_offset, self.watch.log_offset):
            return
        self.watch = self.watch.model_copy(update={"output_offset": output, "log_offset": log_offset})
        write_watch(self.job.dir, self.watch)

    def end(self) -> None:
        write_watch(self.job.dir, self.watch.model_copy(update={"ended": True}))


def _job_script(host: Host, job: JobPaths, storage: DataRoot, cfg_file: Path, name: str, sim_image: str | None,
                cmd: list[str] | None, bounds) -> JobScript:
    """What the batch script runs, with paths and the contract as the runtime sees them."""

    settings = host.slurm
    assert settings is not None
    ssh = settings.ssh if settings.transport().remote else None
    root, job_dir, config = str(storage.root), str(job.dir), str(cfg_file)
    if ssh:  # the data root's layout under remote_root on the login node
        root = ssh.remote_root
        job_dir, config = f"{root}/{storage.relative(job.dir)}", f"{root}/{storage.relative(cfg_file)}"
    env = contract_env(job, data_dir=root, job_dir=job_dir, config_path=config, job_name=name)
    image = None
    if settings.runtime == "docker":
        image = sim_image or os.environ.get(RUNTIME_IMAGE_ENV) or host.image
        data_env = contract_env(job, data_dir=host.data_mount, job_dir=f"{host.data_mount}/{storage.relative(job.dir)}",
                                config_path=f"{host.data_mount}/{storage.relative(cfg_file)}", job_name=name)
        env = {**data_env, "HOME": "/tmp"}
    elif settings.runtime in ("apptainer", "singularity") and sim_image:
        image = sif_path(settings, sim_image)
    image_args = host.simulator_arguments(config_path=storage.relative(cfg_file), job_id=job.job_id, job_name=name) if sim_image else []
    if image and not sim_image and not cmd:
        cmd = ["python", "-m", "simulator"]
    return JobScript(job_id=job.job_id, job_dir=job_dir, data_root=root, project_root=(ssh and ssh.project_root) or str(PROJECT_ROOT),
                     env=env, command=cmd, image=image, image_args=image_args, run_as=host.run_as, data_mount=host.data_mount,
                     memory_bytes=bounds.memory, pids=bounds.pids, nofile=bounds.nofile)


def _finish(run: SupervisedRun, source: SlurmSource, req: slurm.Request, stop_asked: bool, info: dict[str, Any], job: JobPaths) -> SupervisedRun:
    """Slurm's last word as the run's outcome (core/states.slurm_status) and in job_info.json."""
    slurm_id = source.slurm_job_id
    status, code, message = slurm_status(source.state, stop_requested=stop_asked, exit_code=source.exit_code)
    info.update(_slurm_fields(source, req), slurm_status=status)
    write_json_atomic(job.job_info_file, info)
    if status == "failed" and not run.error_code:
        run.error_code, run.error_detail = code, f"Slurm job {slurm_id} {source.state or 'forgotten'}: {message}"
        if code == "simulator_error":  # the exit code says it; flows.simulation words it as on Docker hosts
            run.error_code = None
            run.returncode = source.exit_code if source.exit_code not in (None, 0) else 1
            run.note = f" (Slurm job {slurm_id} {source.state}: {message})"
    elif status == "finished":
        run.returncode = 0
    return run


def _record_cancelled(logger) -> None:
    """Record Cancelled now that the Slurm job has ended (as flows/container_entry.py does on Docker
    hosts): Prefect's runner would record it too, but only about 10 s after this process exits."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.runtime import flow_run
    from prefect.states import Cancelled

    if not flow_run.id:
        return
    try:
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(UUID(flow_run.id), Cancelled(message="Cancelled on request; the Slurm job got TERM and ended."), force=True)
    except Exception as exc:  # the runner records it anyway, later
        logger.warning("[WARNING] could not record the cancellation: %s", exc)


def _on_sigterm(cancelled: threading.Event):
    """Prefect's runner stops a process-pool run with SIGTERM: treat it as the stop it is."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, lambda *_: cancelled.set())


def _stop(slurm_id: str, grace: float, source: SlurmSource, logger, via: Transport) -> None:
    """TERM first (the job's handler runs), then scancel after ``grace`` if it still runs."""
    logger.info("[INFO] Stopping Slurm job %s: TERM, then scancel after %.0f s", slurm_id, grace)
    try:
        slurm.signal_job(slurm_id, "TERM", via)
    except slurm.SlurmError as exc:
        logger.warning("[WARNING] scancel --signal=TERM %s: %s", slurm_id, exc)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        source.poll()
        if source.ended:
            break
        time.sleep(POLL_SECONDS / 2)
    if source.ended:
        return
    try:
        slurm.cancel(slurm_id, via)
    except slurm.SlurmError as exc:
        logger.warning("[WARNING] scancel %s: %s", slurm_id, exc)

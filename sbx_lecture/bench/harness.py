"""Run a suite's jobs on a Dask cluster, with a progress display; finished jobs are not run again.

Every job has its own folder under the output directory (see :mod:`.runner`); a job whose ``result.json`` exists
is finished and skipped, one with a checkpoint is continued from it. One job is one Dask task. By default
:func:`run_jobs` starts a local cluster of single-threaded worker processes that listens on 127.0.0.1 only (no
dashboard); given a scheduler address it submits the jobs to that cluster instead. A task whose worker dies is run
again on another worker (Dask's ``distributed.scheduler.allowed-failures`` times): with a shared filesystem it
continues from the run's newest checkpoint bundle. Workers send their step counts as Dask events; results come back
to this process, which writes the ``result.json`` a worker without our filesystem could not.

Ctrl-C asks the running jobs to save a checkpoint and stop (a second Ctrl-C stops waiting for them); the same
command then resumes them. The request is an event held by the scheduler, so a job that Dask runs again on another
worker afterwards stops too. A worker process that is ended instead loses the steps since its last checkpoint.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import signal
import time
import uuid
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from sbx_lecture.bench.figures import execute_figure
from sbx_lecture.bench.runner import RESULT_FILE, changed_settings, execute_run, read_result, write_result
from sbx_lecture.bench.speed import contestant_settings, execute_speed, lacks_sbx, speed_steps
from sbx_lecture.bench.suites import FigureJob, Job, RunJob, SpeedJob, SuiteError
from sbx_lecture.zoo_config import zoo_settings

if TYPE_CHECKING:
    from distributed import Client, Future

RUNS_DIR = "runs"
#: Address every process of a local cluster binds to.
LOOPBACK = "127.0.0.1"
#: In a worker's environment: the folder it writes its run folders in, instead of the command's ``--out`` (for
#: workers without the command's filesystem, where that path does not exist or is not writable).
WORKER_OUT_ENV = "SBX_LECTURE_BENCH_WORKER_OUT"
#: Seconds to wait for a scheduler given with ``--scheduler``.
CONNECT_TIMEOUT = 30
#: Prefix of the Dask event, held by the scheduler, that Ctrl-C in a command sets to stop its jobs (one per command,
#: named by its token): a task run again on a new worker after a death still sees it.
STOP_EVENT = "sbx-lecture-stop-"


def job_folder(job: Job, out: Path) -> Path:
    """Where ``job`` keeps its files: ``<out>/runs/...`` for training runs, ``<out>/speed/...`` for timings,
    ``<out>/figures/...`` for figures."""
    if isinstance(job, RunJob):
        return out / RUNS_DIR / job.folder
    return out / job.folder


def job_steps(job: Job) -> int:
    """Environment steps a job will take (for the progress bars; 0 when the budget is settled at run time)."""
    if isinstance(job, SpeedJob):
        return speed_steps(job)
    if isinstance(job, FigureJob):
        return 0
    return job.timesteps


def stored_result(job: Job, out: Path) -> dict[str, Any] | None:
    """The result of a finished job, or ``None``; status ``"stale"`` when the job's zoo entry now gives other
    settings than those it was made with (:func:`.runner.changed_settings`; a speed pair of each contestant's own
    defaults, when its overrides changed)."""
    result = read_result(job_folder(job, out))
    if result is None or isinstance(job, FigureJob):
        return result
    current = (
        partial(contestant_settings, job, job.ours)
        if isinstance(job, SpeedJob)
        else partial(zoo_settings, job.algo, job.env_id, dict(job.hyperparams), job.conf_file)
    )
    stale = changed_settings(result, current)
    return result if stale is None else {**result, "status": "stale", "error": stale}


def run_again(job: Job, stored: dict[str, Any]) -> bool:
    """Whether ``job``, finished with the :func:`stored_result` ``stored``, is to run again: a speed pair measured
    before the SBX sibling it names was installed (its result stays in the reports until then)."""
    return isinstance(job, SpeedJob) and stored["status"] != "stale" and lacks_sbx(job, stored)


def execute(job: Job, out: Path, report: Any = None) -> dict[str, Any]:
    """Run one job in this process."""
    if isinstance(job, RunJob):
        return execute_run(job, job_folder(job, out), report)
    if isinstance(job, FigureJob):
        return execute_figure(job, job_folder(job, out), report)
    return execute_speed(job, job_folder(job, out), report)


def describe(result: dict[str, Any]) -> str:
    """One line about a finished job."""
    status = result.get("status", "?")
    if status == "failed":
        return f"FAILED: {result.get('error', 'see error.txt')}"
    if status == "interrupted":  # a run's result says what it saved; nothing else keeps partial work
        return result.get("detail", "interrupted: nothing was saved; run the command again")
    if result.get("kind") == "figure":
        return f"{status}: {result.get('summary', '')}"
    if status == "stale":
        return f"stale: {result.get('error', '')}"
    if status == "busy":
        return "busy: another bench is running it; run the command again when it has finished"
    if result.get("kind") == "speed":
        return (
            f"{status}: {result['ours_steps_per_second']:.0f} vs {result['sibling_steps_per_second']:.0f} steps/s, "
            f"ratio {result['ratio']:.2f}"
        )
    return (
        f"{status}: return {result['final_mean']:.1f} ± {result['final_std']:.1f}, "
        f"{result['steps_per_second']:.0f} steps/s, {result['wall_seconds']:.0f} s"
    )


class JobProgress:
    """What the user sees while jobs run, on :class:`rich.progress.Progress`: live bars (the suite, and one per
    running job), or with ``live=False`` (``--plain``) plain lines for logs, one when a job starts and one when it
    ends::

        [0/4] start ppo CartPole-v1 seed 0 (3000 steps)
        [1/4] ppo CartPole-v1 seed 0: done: return 500.0 ± 0.0, 2210 steps/s, 4 s

    The end line comes in both modes; ``live=None``: bars on a terminal, lines otherwise. The harness names a job by
    its folder (``key``) and tells its step counts to :meth:`advanced`.
    """

    def __init__(self, total: int, live: bool | None = None) -> None:
        # Lines as they are: no markup, highlighting or wrapping (labels and errors hold brackets and long paths).
        console = Console(markup=False, emoji=False, highlight=False, soft_wrap=True)
        live = console.is_terminal if live is None else live
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        self.progress = Progress(*columns, console=console, disable=not live)
        self.total = total
        self.suite = self.progress.add_task("jobs", total=total)
        self.jobs: dict[str, TaskID] = {}
        self.progress.start()

    @property
    def done(self) -> int:
        """Jobs ended so far (the suite bar's count)."""
        return int(next(task.completed for task in self.progress.tasks if task.id == self.suite))

    def _line(self, text: str) -> str:
        return f"[{self.done}/{self.total}] {text}"

    def started(self, key: str, label: str, total: int) -> None:
        """A job began; ``total``: its steps (0: not known yet)."""
        self.jobs[key] = self.progress.add_task(f"  {label}", total=total or None)
        if self.progress.disable:
            self.message(self._line(f"start {label} ({total or '?'} steps)"))

    def advanced(self, key: str, steps: int) -> None:
        """A job reached ``steps`` environment steps."""
        if key in self.jobs:
            self.progress.update(self.jobs[key], completed=steps)

    def finished(self, key: str, label: str, result: dict[str, Any]) -> None:
        """A job ended (done, failed or interrupted)."""
        if key in self.jobs:
            self.progress.remove_task(self.jobs.pop(key))
        self.progress.advance(self.suite)
        self.message(self._line(f"{label}: {describe(result)}"))

    def message(self, text: str) -> None:
        """A line for the user (above the bars)."""
        self.progress.console.print(text)

    def close(self) -> None:
        """No more updates."""
        self.progress.stop()


#: XLA's CPU flags for one compute thread, as torch gets with ``--threads 1``.
SINGLE_THREAD_XLA_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def _ignore_interrupt() -> Any:
    """A Dask worker plugin: local workers ignore Ctrl-C, which the terminal sends to them too; the command stops
    their jobs instead (the event :data:`STOP_EVENT`)."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class IgnoreInterrupt(WorkerPlugin):
        name = "sbx-lecture-ignore-interrupt"

        def setup(self, worker: Any) -> None:  # in the worker process's main thread, restarted workers too
            signal.signal(signal.SIGINT, signal.SIG_IGN)

    return IgnoreInterrupt()


def _stopped(job: Job, status: str = "interrupted") -> dict[str, Any]:
    """The result of a job that did not get to run (or whose workers kept dying)."""
    if isinstance(job, RunJob):
        what: dict[str, Any] = {"kind": "run", "algo": job.algo, "env": job.env_id, "seed": job.seed}
        what.update(family=job.family, timesteps=job.timesteps)
    elif isinstance(job, SpeedJob):
        what = {"kind": "speed", "ours": job.ours, "sibling": job.sibling, "env": job.env_id}
    else:
        what = {"kind": job.kind, "name": job.name}
    return {**what, "status": status, "label": job.label}


def _work(job: Job, out: Path, threads: int, topic: str, token: str) -> dict[str, Any]:
    """One job, in a worker: its step counts go to ``topic``; the command's stop event interrupts it."""
    import torch as th
    from distributed import Event, get_worker

    stop = Event(STOP_EVENT + token)
    if stop.is_set():  # queued before Ctrl-C
        return {**_stopped(job), "detail": "not started (interrupted); run the command again"}
    th.set_num_threads(threads)
    if threads == 1:  # JAX (SBX, the speed suite's optional sibling) reads its thread settings when first imported
        os.environ.setdefault("XLA_FLAGS", SINGLE_THREAD_XLA_FLAGS)
    worker = get_worker()
    key = str(job_folder(job, out))  # the command's name for the job
    here = Path(os.environ.get(WORKER_OUT_ENV) or out)

    def report(steps: int) -> None:  # about once a second
        worker.log_event(topic, [key, int(steps)])
        if stop.is_set():
            raise KeyboardInterrupt  # the runner saves a checkpoint and returns "interrupted"

    report(0)
    return execute(job, here, report)


#: The Dask setting through which nannies set ``MALLOC_TRIM_THRESHOLD_`` in their workers' environment.
TRIM_SETTING = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"


def _check_scheduler_address(scheduler: str) -> None:
    """Refuse an address Dask would spend a minute failing to reach: anything but ``tcp://`` or ``tls://HOST:PORT``."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(scheduler)
        reachable = parts.scheme in ("tcp", "tls") and bool(parts.hostname) and parts.port is not None
    except ValueError:  # a port that is not a number
        reachable = False
    if not reachable:
        raise SuiteError(f"--scheduler {scheduler!r} is not a Dask scheduler address: give tcp://HOST:PORT")


@contextlib.contextmanager
def connect(n_workers: int = 1, scheduler: str | None = None) -> Iterator[Client]:
    """A Dask client: of the cluster at ``scheduler``, or of a new local cluster of ``n_workers`` processes.

    The local cluster (scheduler, nannies, workers) listens on 127.0.0.1 only and has no dashboard; each worker
    runs one task at a time. It is closed, with its worker processes, when the block ends. Its workers start with
    the command's environment, without the ``MALLOC_TRIM_THRESHOLD_=65536`` that Dask's nannies add by default:
    that setting hands freed memory back to the kernel at every gradient step, and SQL then spent 45 % of its CPU
    time in the kernel faulting the same pages in again (see :mod:`sbx_lecture.infra.allocator`).

    :raises SuiteError: when the scheduler cannot be reached
    """
    try:
        import dask
        from distributed import Client, LocalCluster
    except ImportError:
        raise SuiteError('the bench engine needs Dask: pip install "sbx-lecture[bench]"') from None
    if scheduler is not None:
        _check_scheduler_address(scheduler)
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT, set_as_default=False)
        except (OSError, ValueError, TimeoutError) as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise SuiteError(
                f"cannot reach the Dask scheduler at {scheduler} ({reason}): start it with `dask scheduler`, "
                "or leave out --scheduler for a local cluster"
            ) from None
        with client:
            yield client
        return
    with (
        dask.config.set({TRIM_SETTING: None}),  # None: the nannies leave the variable out
        LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            host=LOOPBACK,
            protocol="tcp://",
            dashboard_address=None,  # no dashboard; the scheduler's HTTP routes (health) on a free loopback port:
            scheduler_kwargs={"dashboard_address": f"{LOOPBACK}:0"},
            worker_dashboard_address=None,
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        client.register_plugin(_ignore_interrupt())
        yield client


def run_jobs(
    jobs: Sequence[Job],
    out: Path,
    n_jobs: int = 1,
    threads: int = 1,
    live: bool | None = None,
    scheduler: str | None = None,
    client: Client | None = None,
) -> list[dict[str, Any]]:
    """Run the unfinished ``jobs`` on Dask workers; return every job's result, in order.

    Finished jobs are read from their ``result.json`` and reported as ``"skipped"``. The others run on ``client``'s
    cluster when given, else on the cluster at ``scheduler``, else on a local cluster of ``n_jobs`` worker processes
    (:func:`connect`); each worker uses ``threads`` torch threads. Progress (:class:`JobProgress`): live bars on a
    terminal (``live=None``) or when ``live`` is true, plain lines otherwise.
    """
    out = Path(out).absolute()  # the workers' working folder need not be ours
    results: list[dict[str, Any] | None] = [None] * len(jobs)
    pending: list[int] = []
    for index, job in enumerate(jobs):
        stored = stored_result(job, out)
        if stored is None or run_again(job, stored):
            pending.append(index)
        else:
            results[index] = stored if stored["status"] == "stale" else {**stored, "status": "skipped"}
    display = JobProgress(len(pending), live)
    skipped = sum(result is not None and result["status"] == "skipped" for result in results)
    if skipped:
        display.message(f"{skipped} of {len(jobs)} jobs already finished in {out}: skipped")
    for job, result in zip(jobs, results, strict=True):
        if result is not None and result["status"] == "stale":
            display.message(f"{job.label}: {describe(result)} ({job_folder(job, out)})")
    try:
        if pending and client is not None:
            _run_pending(client, jobs, pending, results, out, threads, display)
        elif pending:
            with connect(max(1, min(n_jobs, len(pending))), scheduler) as own:
                _run_pending(own, jobs, pending, results, out, threads, display)
    finally:
        display.close()
    return [result for result in results if result is not None]


def _run_pending(
    client: Client,
    jobs: Sequence[Job],
    pending: list[int],
    results: list[dict[str, Any] | None],
    out: Path,
    threads: int,
    display: JobProgress,
) -> None:
    from distributed import Event

    token = uuid.uuid4().hex[:8]
    topic = f"sbx-lecture-bench-{token}"
    events: collections.deque[Any] = collections.deque()
    client.subscribe_topic(topic, events.append)  # called in the client's event-loop thread
    futures: dict[Future, int] = {}
    started: set[str] = set()  # the keys of the jobs shown as started
    for index in pending:
        job = jobs[index]
        # Dask runs one task per key and hands its result to every future of that key: the key names the job's
        # folder, which is unique per job (labels are not: speed pairs that differ only in their settings).
        key = f"{job.label} [{job_folder(job, out).relative_to(out)} {token}]"
        futures[client.submit(_work, job, out, threads, topic, token, key=key, pure=False)] = index
    try:
        _wait_for(client, futures, jobs, results, out, events, display, started)
    except KeyboardInterrupt:
        display.message("interrupted: running training runs save a checkpoint; run the same command again to resume")
        try:
            with contextlib.suppress(Exception):
                Event(STOP_EVENT + token, client=client).set()
            _wait_for(client, futures, jobs, results, out, events, display, started)
        except KeyboardInterrupt:
            display.message("stopped waiting: the running jobs lose the steps since their last checkpoint")
        client.cancel(list(futures))
        raise
    finally:
        with contextlib.suppress(Exception):
            client.unsubscribe_topic(topic)


def _wait_for(
    client: Client,
    futures: dict[Future, int],
    jobs: Sequence[Job],
    results: list[dict[str, Any] | None],
    out: Path,
    events: collections.deque[Any],
    display: JobProgress,
    started: set[str],
) -> None:
    """Feed the display from the workers' events until every future has a result."""
    from distributed import as_completed

    keys = {str(job_folder(jobs[index], out)): index for index in futures.values()}
    finished = {str(job_folder(jobs[index], out)) for index in futures.values() if results[index] is not None}

    def drain() -> None:
        while events:
            _, (key, steps) = events.popleft()
            if key in finished or key not in keys:
                continue
            if key not in started:
                started.add(key)
                job = jobs[keys[key]]
                display.started(key, job.label, job_steps(job))
            display.advanced(key, steps)

    remaining = as_completed([future for future, index in futures.items() if results[index] is None], loop=client.loop)
    while not remaining.is_empty():
        done = remaining.next_batch(block=False)
        drain()
        if not done:
            time.sleep(0.2)
        for future in done:
            index = futures[future]
            job = jobs[index]
            try:
                result = future.result()
            except Exception as exc:  # the task failed too often (its workers died), or was cancelled
                message = " ".join(str(exc).split()) or type(exc).__name__
                result = {**_stopped(job, "failed"), "error": f"worker died: {type(exc).__name__}: {message}"}
            _keep(job, out, result)
            results[index] = result
            key = str(job_folder(job, out))
            finished.add(key)
            display.finished(key, job.label, result)


def _keep(job: Job, out: Path, result: dict[str, Any]) -> None:
    """Write a finished job's ``result.json`` here unless its worker did (a worker without our filesystem)."""
    if result.get("status") != "done":
        return
    folder = job_folder(job, out)
    if not (folder / RESULT_FILE).exists():
        folder.mkdir(parents=True, exist_ok=True)
        write_result(folder, result)

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

import contextlib
import logging
import os
import signal
import threading
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from sbx_lecture.bench import runner
from sbx_lecture.bench.report import REPORT_TEXT
from sbx_lecture.bench.speed import execute_speed, speed_steps
from sbx_lecture.bench.suites import Job, RunJob, SpeedJob, SuiteError
from sbx_lecture.infra.validation import one_line

if TYPE_CHECKING:
    from distributed import Client

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


def job_steps(job: Job) -> int:
    """Environment steps a job will take (for the progress bars; 0 when the budget is settled at run time)."""
    if isinstance(job, SpeedJob):
        return speed_steps(job)
    return job.timesteps if isinstance(job, RunJob) else 0


def execute(job: Job, out: Path, report: Any = None) -> dict[str, Any]:
    """Run one training run, speed pair or figure (:data:`.figures.FIGURES`) in this process (see
    :func:`.runner.run_once`)."""
    folder = out / job.folder
    if isinstance(job, RunJob):
        return runner.execute_run(job, folder, report)
    if isinstance(job, SpeedJob):
        return execute_speed(job, folder, report)
    from sbx_lecture.bench.figures import FIGURES, IMAGE_FILE

    return runner.run_once(job, folder, lambda: {**FIGURES[job.name](folder, **job.params), "image": IMAGE_FILE})


def describe(result: dict[str, Any]) -> str:
    """One line about a finished job: by its status, else by its kind (``report.yml``'s ``lines``)."""
    lines = REPORT_TEXT["lines"]
    line = lines.get(result.get("status", ""), lines[result.get("kind", "run")])
    return line.format_map(
        {"status": "?", "error": "see error.txt", "detail": runner.NOTHING_SAVED, "summary": "", **result}
    )


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


def _work(job: RunJob | SpeedJob, out: Path, threads: int, topic: str, token: str) -> dict[str, Any]:
    """One job, in a worker: its step counts go to ``topic``; the command's stop event interrupts it."""
    import torch as th
    from distributed import Event, get_worker

    here = Path(os.environ.get(WORKER_OUT_ENV) or out)
    stop = Event(STOP_EVENT + token)
    if stop.is_set():  # queued before Ctrl-C
        detail = "not started (interrupted); run the command again"
        return job.outcome("interrupted", here / job.folder, detail=detail)
    th.set_num_threads(threads)
    if threads == 1:  # JAX (SBX, the speed suite's optional sibling) reads its thread settings when first imported
        os.environ.setdefault("XLA_FLAGS", SINGLE_THREAD_XLA_FLAGS)
    worker = get_worker()
    key = str(out / job.folder)  # the command's name for the job

    def report(steps: int) -> None:  # about once a second
        worker.log_event(topic, [key, int(steps)])
        if stop.is_set():
            raise KeyboardInterrupt  # the runner saves a checkpoint and returns "interrupted"

    report(0)
    return execute(job, here, report)


#: The Dask setting through which nannies set ``MALLOC_TRIM_THRESHOLD_`` in their workers' environment.
TRIM_SETTING = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"


@contextlib.contextmanager
def connect(n_workers: int = 1, scheduler: str | None = None) -> Iterator[Client]:
    """A Dask client: of the cluster at ``scheduler``, or of a new local cluster of ``n_workers`` processes.

    The local cluster (scheduler, nannies, workers) listens on 127.0.0.1 only and has no dashboard; each worker
    runs one task at a time. It is closed, with its worker processes, when the block ends. Its workers start with
    the command's environment, without the ``MALLOC_TRIM_THRESHOLD_=65536`` that Dask's nannies add by default:
    that setting hands freed memory back to the kernel at every gradient step, and SQL then spent 45 % of its CPU
    time in the kernel faulting the same pages in again (see :mod:`sbx_lecture.infra.allocator`).

    :raises SuiteError: when the scheduler cannot be reached (its address is checked by
        :func:`sbx_lecture.bench.check_dask_options`)
    """
    try:
        import dask
        from distributed import Client, LocalCluster
    except ImportError:
        raise SuiteError('the bench engine needs Dask: pip install "sbx-lecture[bench]"') from None
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT, set_as_default=False)
        except (OSError, ValueError, TimeoutError) as exc:
            raise SuiteError(
                f"cannot reach the Dask scheduler at {scheduler} ({one_line(exc)}): start it with `dask scheduler`, "
                "or leave out --scheduler for a local cluster"
            ) from None
        with client:
            yield client
        return
    with (
        dask.config.set({TRIM_SETTING: None}),  # None: the nannies leave the variable out
        LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,  # worker processes (the default), over TCP, on the loopback address only
            host=LOOPBACK,
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
    jobs: Sequence[RunJob | SpeedJob],
    out: Path,
    n_jobs: int = 1,
    threads: int = 1,
    live: bool | None = None,
    scheduler: str | None = None,
) -> list[dict[str, Any]]:
    """Run the unfinished ``jobs`` on Dask workers; return every job's result, in order.

    Finished jobs are read from their ``result.json`` (:func:`.runner.stored_result`) and reported as ``"skipped"``
    (stale ones as they are). The others run on the cluster at ``scheduler``, else on a local cluster of ``n_jobs``
    worker processes (:func:`connect`); each worker uses ``threads`` torch threads. Progress, on
    :class:`rich.progress.Progress`: live bars (the suite, and one per running job) on a terminal (``live=None``) or
    when ``live`` is true; otherwise (``--plain``) plain lines for logs, one when a job starts and one when it ends
    (the end line comes in both modes)::

        [0/4] start ppo CartPole-v1 seed 0 (3000 steps)
        [1/4] ppo CartPole-v1 seed 0: done: return 500.0 ± 0.0, 2210 steps/s, 4 s
    """
    out = Path(out).absolute()  # the workers' working folder need not be ours
    # Lines as they are: no markup, highlighting or wrapping (labels and errors hold brackets and long paths).
    console = Console(markup=False, emoji=False, highlight=False, soft_wrap=True)
    results: dict[str, dict[str, Any]] = {}  # by job folder: unique per job (labels are not)
    pending: dict[str, RunJob | SpeedJob] = {}
    for job in jobs:
        key = str(out / job.folder)
        stored = runner.stored_result(job, Path(key))
        if stored is None:
            pending[key] = job
        elif stored["status"] == "stale":
            results[key] = stored
            console.print(f"{job.label}: {describe(stored)} ({key})")
        else:
            results[key] = {**stored, "status": "skipped"}
    skipped = sum(result["status"] == "skipped" for result in results.values())
    if skipped:
        console.print(f"{skipped} of {len(jobs)} jobs already finished in {out}: skipped")
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    live = console.is_terminal if live is None else live
    with Progress(*columns, console=console, disable=not live) as progress:
        progress.add_task("jobs", total=len(pending))
        if pending:
            with connect(max(1, min(n_jobs, len(pending))), scheduler) as client:
                _run_pending(client, pending, results, out, threads, progress)
    return [results[key] for key in (str(out / job.folder) for job in jobs) if key in results]


def _run_pending(
    client: Client,
    pending: dict[str, RunJob | SpeedJob],
    results: dict[str, dict[str, Any]],
    out: Path,
    threads: int,
    progress: Progress,
) -> None:
    """Submit ``pending`` (by job folder), show the steps the workers send (in the client's event-loop thread) on
    ``progress`` (its first task counts the jobs; each running job has a task whose field ``folder`` names it) and
    keep each result as it comes; Ctrl-C sets the command's stop event and waits for the running jobs to stop."""
    from distributed import Event, as_completed

    token = uuid.uuid4().hex[:8]
    topic = f"sbx-lecture-bench-{token}"
    bars: dict[str, TaskID] = {}  # the running jobs' tasks
    lock = threading.Lock()  # one of the two threads at a time on the display and the results
    suite = progress.tasks[0]

    def say(text: str) -> None:
        progress.console.print(f"[{int(suite.completed)}/{len(pending)}] {text}")

    def steps_taken(event: tuple[float, list[Any]]) -> None:
        key, steps = event[1]
        with lock:
            if key in pending and key not in results:
                if key not in bars:
                    total = job_steps(pending[key])
                    bars[key] = progress.add_task(f"  {pending[key].label}", total=total or None, folder=key)
                    if progress.disable:
                        say(f"start {pending[key].label} ({total or '?'} steps)")
                progress.update(bars[key], completed=steps)

    client.subscribe_topic(topic, steps_taken)
    # Dask runs one task per key and hands its result to every future of that key: the key names the job's folder.
    futures = {
        client.submit(_work, job, out, threads, topic, token, key=f"{job.label} [{key} {token}]", pure=False): key
        for key, job in pending.items()
    }
    remaining = as_completed(futures, loop=client.loop)

    def collect() -> None:
        for future in remaining:
            key = futures[future]
            try:
                result = future.result()
            except Exception as exc:  # the task failed too often (its workers died), or was cancelled
                error = f"worker died: {one_line(exc, typed=True)}"
                result = pending[key].outcome("failed", Path(key), error=error)
            if result.get("status") == "done" and not (Path(key) / runner.RESULT_FILE).exists():
                runner.write_result(Path(key), result)  # here, as a worker without our filesystem could not
            with lock:
                results[key] = result
                if key in bars:
                    progress.remove_task(bars.pop(key))
                progress.advance(suite.id)
                say(f"{pending[key].label}: {describe(result)}")

    try:
        collect()
    except KeyboardInterrupt:
        progress.console.print(
            "interrupted: running training runs save a checkpoint; run the same command again to resume"
        )
        try:
            with contextlib.suppress(Exception):
                Event(STOP_EVENT + token, client=client).set()
            collect()
        except KeyboardInterrupt:
            progress.console.print("stopped waiting: the running jobs lose the steps since their last checkpoint")
        client.cancel(list(futures))
        raise
    finally:
        with contextlib.suppress(Exception):
            client.unsubscribe_topic(topic)

"""Run a suite's jobs in parallel worker processes, with a progress display; finished jobs are not run again.

Every job has its own folder under the output directory (see :mod:`.runner`); a job whose ``result.json`` exists
is finished and skipped, one with a checkpoint is continued from it. Workers are started with ``spawn`` (no torch
state is inherited), use one torch thread each unless told otherwise, and report their step counts through a
queue. Ctrl-C asks the running jobs to save a checkpoint and stop; the same command then resumes them.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import signal
import sys
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any, Protocol

from sbx_lecture.bench.runner import execute_run, read_result
from sbx_lecture.bench.speed import execute_speed
from sbx_lecture.bench.suites import Job, RunJob, SpeedJob
from sbx_lecture.checkpoints import interrupt_once

RUNS_DIR = "runs"
_progress_queue: Any = None
_stop_event: Any = None


def job_folder(job: Job, out: Path) -> Path:
    """Where ``job`` keeps its files: ``<out>/runs/...`` for training runs, ``<out>/speed/...`` for timings."""
    if isinstance(job, RunJob):
        return out / RUNS_DIR / job.folder
    return out / job.folder


def job_steps(job: Job) -> int:
    """Environment steps a job will take (for the progress bars; 0 when the budget is settled at run time)."""
    if isinstance(job, SpeedJob):
        return job.timesteps * job.repeats * 2
    return job.timesteps


def stored_result(job: Job, out: Path) -> dict[str, Any] | None:
    """The result of a finished job, or ``None``."""
    return read_result(job_folder(job, out))


def execute(job: Job, out: Path, report: Any = None) -> dict[str, Any]:
    """Run one job in this process."""
    if isinstance(job, RunJob):
        return execute_run(job, job_folder(job, out), report)
    return execute_speed(job, job_folder(job, out), report)


class Display(Protocol):
    """What the harness tells the user while jobs run."""

    def started(self, key: str, label: str, total: int) -> None:
        """A job began."""

    def advanced(self, key: str, steps: int) -> None:
        """A job reached ``steps`` environment steps."""

    def finished(self, key: str, label: str, result: dict[str, Any]) -> None:
        """A job ended (done, failed or interrupted)."""

    def message(self, text: str) -> None:
        """A line for the user."""

    def close(self) -> None:
        """No more updates."""


def describe(result: dict[str, Any]) -> str:
    """One line about a finished job."""
    status = result.get("status", "?")
    if status == "failed":
        return f"FAILED: {result.get('error', 'see error.txt')}"
    if status == "interrupted":
        return "interrupted (checkpoint saved; run the command again to resume)"
    if result.get("kind") == "speed":
        return (f"{status}: {result['ours_steps_per_second']:.0f} vs {result['sibling_steps_per_second']:.0f} steps/s, "
                f"ratio {result['ratio']:.2f}")
    return (f"{status}: return {result['final_mean']:.1f} ± {result['final_std']:.1f}, "
            f"{result['steps_per_second']:.0f} steps/s, {result['wall_seconds']:.0f} s")


class LineDisplay:
    """Plain lines: one when a job starts, one when it ends (for logs and terminals without live updates)."""

    def __init__(self, total: int, stream: Any = None):
        self.total = total
        self.done = 0
        self.stream = stream or sys.stdout

    def started(self, key: str, label: str, total: int) -> None:
        print(f"[{self.done}/{self.total}] start {label} ({total or '?'} steps)", file=self.stream, flush=True)

    def advanced(self, key: str, steps: int) -> None:
        pass

    def finished(self, key: str, label: str, result: dict[str, Any]) -> None:
        self.done += 1
        print(f"[{self.done}/{self.total}] {label}: {describe(result)}", file=self.stream, flush=True)

    def message(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def close(self) -> None:
        pass


class RichDisplay:
    """Live progress bars: the whole suite, and one bar per running job."""

    def __init__(self, total: int):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        )
        self.progress.start()
        self.overall = self.progress.add_task("jobs", total=total)
        self.tasks: dict[str, Any] = {}

    def started(self, key: str, label: str, total: int) -> None:
        self.tasks[key] = self.progress.add_task(f"  {label}", total=total or None)

    def advanced(self, key: str, steps: int) -> None:
        if key in self.tasks:
            self.progress.update(self.tasks[key], completed=steps)

    def finished(self, key: str, label: str, result: dict[str, Any]) -> None:
        task = self.tasks.pop(key, None)
        if task is not None:
            self.progress.remove_task(task)
        self.progress.advance(self.overall)
        self.progress.console.print(f"{label}: {describe(result)}")

    def message(self, text: str) -> None:
        self.progress.console.print(text)

    def close(self) -> None:
        self.progress.stop()


def make_display(total: int, live: bool | None = None) -> Display:
    """Live bars on a terminal, plain lines otherwise."""
    if live is None:
        live = sys.stdout.isatty()
    return RichDisplay(total) if live else LineDisplay(total)


#: XLA's CPU flags for one compute thread, as torch gets with ``--threads 1``.
SINGLE_THREAD_XLA_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def _init_worker(progress_queue: Any, stop_event: Any, threads: int) -> None:
    global _progress_queue, _stop_event
    import torch as th

    th.set_num_threads(threads)
    if threads == 1:  # JAX (SBX, the speed suite's optional sibling) reads its thread settings when first imported
        os.environ.setdefault("XLA_FLAGS", SINGLE_THREAD_XLA_FLAGS)
    _progress_queue = progress_queue
    _stop_event = stop_event
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # idle workers ignore Ctrl-C; a running job takes it


def _work(job: Job, out: Path) -> dict[str, Any]:
    key = str(job_folder(job, out))
    if _stop_event is not None and _stop_event.is_set():  # queued before Ctrl-C, which cancels it
        return {"kind": "run" if isinstance(job, RunJob) else "speed", "status": "interrupted", "label": job.label}

    def report(steps: int) -> None:
        _progress_queue.put((key, steps))

    report(0)
    signal.signal(signal.SIGINT, interrupt_once)  # a running job takes Ctrl-C, saves its state and stops
    try:
        return execute(job, out, report)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def run_jobs(jobs: Sequence[Job], out: Path, n_jobs: int = 1, threads: int = 1, display: Display | None = None,
             live: bool | None = None) -> list[dict[str, Any]]:
    """Run the unfinished ``jobs`` in ``n_jobs`` worker processes; return every job's result, in order.

    Finished jobs are read from their ``result.json`` and reported as ``"skipped"``. Without a ``display``, live
    bars are shown on a terminal (``live=None``), or when ``live`` is true; plain lines otherwise.
    """
    results: list[dict[str, Any] | None] = [None] * len(jobs)
    pending: list[int] = []
    for index, job in enumerate(jobs):
        stored = stored_result(job, out)
        if stored is None:
            pending.append(index)
        else:
            results[index] = {**stored, "status": "skipped"}
    display = display or make_display(len(pending), live)
    skipped = len(jobs) - len(pending)
    if skipped:
        display.message(f"{skipped} of {len(jobs)} jobs already finished in {out}: skipped")
    if pending:
        try:
            _run_pending(jobs, pending, results, out, n_jobs, threads, display)
        finally:
            display.close()
    else:
        display.close()
    return [result for result in results if result is not None]


def _run_pending(jobs: Sequence[Job], pending: list[int], results: list[dict[str, Any] | None], out: Path,
                 n_jobs: int, threads: int, display: Display) -> None:
    context = multiprocessing.get_context("spawn")
    progress_queue = context.Queue()
    stop_event = context.Event()
    keys = {str(job_folder(jobs[index], out)): index for index in pending}
    with ProcessPoolExecutor(max_workers=max(1, min(n_jobs, len(pending))), mp_context=context,
                             initializer=_init_worker, initargs=(progress_queue, stop_event, threads)) as pool:
        futures: dict[Future[dict[str, Any]], int] = {pool.submit(_work, jobs[i], out): i for i in pending}
        try:
            _wait_for(futures, jobs, results, progress_queue, keys, display)
        except KeyboardInterrupt:
            stop_event.set()
            display.message("interrupted: the running jobs save a checkpoint; run the same command again to resume")
            for future in futures:
                future.cancel()
            for process in list(getattr(pool, "_processes", {}).values()):
                with contextlib.suppress(OSError):
                    os.kill(process.pid, signal.SIGINT)
            wait([future for future in futures if not future.cancelled()])
            raise


def _wait_for(futures: dict[Future[dict[str, Any]], int], jobs: Sequence[Job],
              results: list[dict[str, Any] | None], progress_queue: Any, keys: dict[str, int],
              display: Display) -> None:
    started: set[str] = set()
    finished: set[str] = set()
    key_of = {index: key for key, index in keys.items()}
    remaining = set(futures)

    def drain() -> None:
        while True:
            try:
                key, steps = progress_queue.get_nowait()
            except queue.Empty:
                return
            if key not in started:
                started.add(key)
                if key in finished:
                    continue
                job = jobs[keys[key]]
                display.started(key, job.label, job_steps(job))
            display.advanced(key, steps)

    while remaining:
        done, remaining = wait(remaining, timeout=0.5, return_when=FIRST_COMPLETED)
        drain()
        for future in done:
            index = futures[future]
            job = jobs[index]
            try:
                result = future.result()
            except Exception as exc:  # a worker that died (out of memory, killed)
                result = {"kind": "run" if isinstance(job, RunJob) else "speed", "status": "failed",
                          "error": f"worker died: {type(exc).__name__}: {exc}"}
            results[index] = result
            finished.add(key_of[index])
            display.finished(key_of[index], job.label, result)

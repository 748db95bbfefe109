"""Steps per second of a lecture algorithm against its SB3 sibling at identical settings, in the same process.

Both algorithms get our algorithm's zoo entry for the environment; arguments the sibling's constructor does not
take (the KL coefficient, the number of conjugate-gradient steps, ...) and those a suite marks as meaning something
else to the sibling (``not_shared``) are dropped for it and listed in the result. A pair marked ``own_defaults``
instead gives every contestant its own constructor defaults: the speed a user gets without choosing settings.
The two are timed in alternating order ``repeats`` times (so that load on a shared machine hits both alike) and
the ratio of the medians is reported, after one untimed warm-up run of each (its seconds are reported apart). Every
round's steps/s of each contestant is kept (``ours_samples``, ``sibling_samples``, ``sbx_samples``): the report's
bootstrap interval of each ratio resamples those rounds (:func:`.stats.ratio_interval`). The raw environment step
rate with random actions, through the same vectorised wrapper stack, is measured too: no algorithm can be faster.

A finished pair is never timed again because of its numbers: only a stored result without the SBX contestant that
is installed now (:meth:`.SpeedJob.lacks_sbx`) is; one made with other settings is reported stale and left as it is, and
another repeat count, budget or override is another folder.

When SBX (``sbx-rl``, SB3's API in JAX with jit-compiled gradient steps; the ``sbx`` extra) is installed, a speed
entry that names an SBX class is timed against it as well, in the same interleaved rounds and with the same
arguments as the SB3 sibling; without SBX the result says so in one line (``sbx_note``) and the rest is unchanged.
"""

from __future__ import annotations

import datetime
import functools
import inspect
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from sbx_lecture.bench.baselines import random_rollout
from sbx_lecture.bench.runner import run_once
from sbx_lecture.bench.suites import SpeedJob
from sbx_lecture.evaluation import ProgressCallback, ProgressReport
from sbx_lecture.zoo_config import ZooSettings

#: Off-policy algorithms start learning after at most this fraction of the timed steps (else only the env is timed).
LEARNING_STARTS_FRACTION = 0.1
#: The untimed warm-up run of each contestant is this many times shorter than a timed one (twice the learning start).
WARMUP_FRACTION = 5


def sibling_arguments(
    kwargs: dict[str, Any], sibling: type, policy: str = "MlpPolicy"
) -> tuple[dict[str, Any], list[str]]:
    """``kwargs`` without what ``sibling`` does not take, and the names of the dropped keys.

    Keys of ``policy_kwargs`` that the sibling's ``policy`` class does not take are dropped too (named
    ``policy_kwargs.<key>``).
    """
    from sbx_lecture.hyperparams import accepted_hyperparameters

    def taken(cls: type, given: dict[str, Any], prefix: str = "") -> tuple[dict[str, Any], list[str]]:
        accepted = accepted_hyperparameters(cls)  # None: it takes **kwargs
        kept = {key: value for key, value in given.items() if accepted is None or key in accepted}
        return kept, sorted(prefix + key for key in set(given) - set(kept))

    kept, dropped = taken(sibling, kwargs)
    policy_class = getattr(sibling, "policy_aliases", {}).get(policy)
    if isinstance(kept.get("policy_kwargs"), dict) and policy_class is not None:
        kept["policy_kwargs"], more = taken(policy_class, kept["policy_kwargs"], "policy_kwargs.")
        dropped += more
    return kept, dropped


def _learning_early(kwargs: dict[str, Any], timesteps: int, cls: type) -> dict[str, Any]:
    """``kwargs`` with learning starting early enough that the timed steps include learning: ``learning_starts``
    (given, else ``cls``'s default) capped at a fraction of ``timesteps``, for a class that takes it."""
    from sbx_lecture.hyperparams import accepted_hyperparameters

    accepted = accepted_hyperparameters(cls)
    if accepted is not None and "learning_starts" not in accepted:
        return dict(kwargs)
    default = inspect.signature(cls).parameters.get("learning_starts")
    starts = int(kwargs.get("learning_starts", 100 if default is None else default.default))
    return {**kwargs, "learning_starts": min(starts, int(timesteps * LEARNING_STARTS_FRACTION))}


def interleaved_samples(measures: Sequence[Callable[[int], float]], repeats: int) -> list[list[float]]:
    """Call each of ``measures`` with the round number ``repeats`` times, in alternating order; return the numbers
    each one returned.

    Every round calls all of them, the order reversed on odd rounds, so that a change of load on a shared machine
    hits every one alike. Report the median of each list; entry ``k`` of every list comes from round ``k``.
    """
    samples: list[list[float]] = [[] for _ in measures]
    indices = list(range(len(measures)))
    for repeat in range(repeats):
        for index in indices if repeat % 2 == 0 else indices[::-1]:
            samples[index].append(float(measures[index](repeat)))
    return samples


def timed(function: Callable[[], Any], clock: Callable[[], float] = time.perf_counter) -> Callable[[int], float]:
    """A measure for :func:`interleaved_samples`: the seconds one call of ``function`` takes on ``clock``."""

    def seconds(_: int) -> float:
        start = clock()
        function()
        return clock() - start

    return seconds


class Contestant(NamedTuple):
    """One algorithm of a speed pair as it is timed: its keyword arguments, and the pair's settings it leaves out."""

    name: str
    cls: type
    settings: ZooSettings
    kwargs: dict[str, Any]
    device: str = "cpu"
    dropped: Sequence[str] = ()


def time_learning(
    contestant: Contestant, env_id: str, timesteps: int, seed: int, costs: list[float] | None, report: ProgressReport
) -> float:
    """Steps per second of one ``learn(timesteps)`` call of ``contestant`` on ``env_id`` (construction and
    environment creation not timed).

    :param costs: where to append the seconds the model spent compiling its update (``compile_update``), when it did
    :param report: told the call's step count about once a second; it may raise :class:`KeyboardInterrupt` to stop
        the call (a stop request), which then propagates. Every contestant pays the same callback.
    """
    model = build_with_environment(contestant, env_id, seed)
    try:
        seconds = timed(lambda: model.learn(timesteps, callback=ProgressCallback(report)))(0)
    finally:
        model.get_env().close()
    compiling = getattr(model, "compile_seconds", None)
    if costs is not None and compiling is not None:
        costs.append(float(compiling))
    return timesteps / seconds


def build_with_environment(contestant: Contestant, env_id: str, seed: int) -> Any:
    """``contestant`` built as ``train`` builds it, with its settings and constructor arguments, on its device and
    a new vectorised ``env_id`` (``model.get_env()``: close it when done)."""
    from sbx_lecture.training import build_model, make_environment

    name, cls, settings, kwargs, device, _ = contestant
    env = make_environment(env_id, settings.n_envs, seed, normalize=settings.normalize, gamma=settings.gamma)
    return build_model(name, cls, env, settings.zoo, kwargs, seed, device=device)


SBX_NOT_INSTALLED = "SBX not timed: sbx-rl is not installed (pip install 'sbx-lecture[sbx]')"


def sbx_algorithm(name: str) -> type | None:
    """The SBX class ``name`` (``"TD3"``, ``"SAC"``, ...), or ``None`` when SBX is not installed.

    :raises ValueError: SBX is installed but has no class of that name
    """
    try:
        import sbx  # type: ignore[import-untyped]
    except ImportError:
        return None
    cls = getattr(sbx, name, None)
    if not isinstance(cls, type):
        known = ", ".join(sorted(n for n in dir(sbx) if isinstance(getattr(sbx, n), type)))
        raise ValueError(f"SBX has no algorithm {name!r}; it has {known}")
    return cls


def jax_backend() -> str | None:
    """The platform JAX computes on (``"cpu"``, ``"gpu"``, ...): where SBX's updates ran; ``None`` without JAX."""
    try:
        import jax  # type: ignore[import-not-found]
    except ImportError:
        return None
    return str(jax.default_backend())


def warmup_length(job: SpeedJob) -> int:
    """The steps of each contestant's untimed warm-up run."""
    return max(job.timesteps // WARMUP_FRACTION, 1)


def speed_steps(job: SpeedJob) -> int:
    """Environment steps ``job`` takes: every contestant's warm-up and timed runs (SBX's when the job names it)."""
    return (3 if job.sbx else 2) * (warmup_length(job) + job.repeats * job.timesteps)


def execute_speed(job: SpeedJob, folder: Path, report: ProgressReport | None = None) -> dict[str, Any]:
    """Measure ``job`` (or return its stored result) and write ``result.json`` into ``folder`` (see
    :func:`.runner.run_once`). A stored result without the SBX sibling is measured again once SBX is installed.

    :param report: told every step the job takes, warm-ups included (the progress bar); it may raise
        :class:`KeyboardInterrupt` to stop the job
    """
    done = 0  # steps of the finished learn calls
    taken = 0  # the steps the job had taken when last reported

    def progress(steps: int) -> None:
        nonlocal taken
        taken = done + steps
        if report is not None:
            report(taken)  # raises KeyboardInterrupt when the command asked its jobs to stop

    def learn(contestant: Contestant, steps: int, seed: int, costs: list[float] | None = None) -> float:
        nonlocal done
        rate = time_learning(contestant, job.env_id, steps, seed, costs, progress)
        done += steps
        progress(0)
        return rate

    def stopped() -> str:
        return f"interrupted after {taken} of {speed_steps(job)} steps: nothing was saved; run the command again"

    return run_once(job, folder, lambda: _measure(job, learn), stopped)


def contestants(job: SpeedJob) -> list[Contestant]:
    """Ours with ``job``'s settings, its SB3 sibling and, when ``job`` names one and SBX is installed, its SBX sibling;
    the siblings get what of ours' settings they take with the same meaning (see :func:`sibling_arguments`)."""
    from sbx_lecture.training import resolve_algorithm

    ours_spec, ours_cls = resolve_algorithm(job.ours)
    settings = job.settings(ours_spec.name)
    ours_kwargs = _learning_early(settings.kwargs, job.timesteps, ours_cls)
    # Identical settings share ours' learning start; with their own defaults, each contestant keeps its own.
    shared_base = settings.kwargs if job.own_defaults else ours_kwargs
    shared = {key: value for key, value in shared_base.items() if key not in job.not_shared}
    not_passed = set(job.not_shared) & set(ours_kwargs)
    sibling_zoo = {key: value for key, value in settings.zoo.items() if key != "policy"}

    def sibling(name: str, cls: type, device: str) -> Contestant:
        kwargs, dropped = sibling_arguments(shared, cls, str(settings.zoo.get("policy", "MlpPolicy")))
        if job.own_defaults:
            kwargs = _learning_early(kwargs, job.timesteps, cls)
        sibling_settings = ZooSettings(settings.raw, sibling_zoo, kwargs, settings.source)
        return Contestant(name, cls, sibling_settings, kwargs, device, sorted(set(dropped) | not_passed))

    sibling_spec, sibling_cls = resolve_algorithm(job.sibling)
    found = [Contestant(ours_spec.name, ours_cls, settings, ours_kwargs, job.device, [])]
    found.append(sibling(sibling_spec.name, sibling_cls, job.device))
    sbx_cls = sbx_algorithm(job.sbx) if job.sbx else None
    if sbx_cls is not None:  # SBX's arrays live where JAX puts them: its device is left at "cpu"
        found.append(sibling(f"sbx.{job.sbx}", sbx_cls, "cpu"))
    return found


def _measure(job: SpeedJob, learn: Callable[..., float]) -> dict[str, Any]:
    """Time ``job``'s contestants, ``learn(contestant, steps, seed, costs)`` giving each run's steps per second."""
    timed_contestants = contestants(job)
    ours, sibling, *sbx = timed_contestants
    # One untimed warm-up per contestant: it pays the costs paid once per process (SBX's jit compilation, lazy
    # imports, allocator growth), reported apart as ``warmup_seconds``.
    warmup_steps = warmup_length(job)
    warmup_seconds = {entry.name: warmup_steps / learn(entry, warmup_steps, job.repeats) for entry in timed_contestants}
    # Our update's compilation (``compile_update``), paid by the first timed run long enough to compile: torch
    # reuses the compiled code for the next models of the process, and the median leaves that run out. Round k of
    # each contestant uses seed k.
    compile_seconds: list[float] = []
    measures = [
        functools.partial(learn, entry, job.timesteps, costs=compile_seconds if entry is ours else None)
        for entry in timed_contestants
    ]
    samples = interleaved_samples(measures, job.repeats)
    rates = {entry.name: values for entry, values in zip(timed_contestants, samples, strict=True)}
    median = {name: statistics.median(values) for name, values in rates.items()}
    sbx_part: dict[str, Any] = {"sbx_note": SBX_NOT_INSTALLED} if job.sbx and not sbx else {}
    for entry in sbx:  # the SBX sibling, when it was timed
        sbx_part.update(sbx=entry.name, sbx_steps_per_second=median[entry.name], sbx_dropped=entry.dropped)
        sbx_part.update(ratio_vs_sbx=median[ours.name] / median[entry.name], sbx_samples=rates[entry.name])
        sbx_part.update(sbx_backend=jax_backend())
    return {
        "measured_on": datetime.date.today().isoformat(),  # rates of different days differ: say which day
        "ours_steps_per_second": median[ours.name],
        "sibling_steps_per_second": median[sibling.name],
        "ratio": median[ours.name] / median[sibling.name],
        # the vectorised environment alone, with uniformly random actions: no algorithm can be faster
        "env_steps_per_second": random_rollout(job.env_id, ours.settings.n_envs, 0, max(job.timesteps, 10_000))[1],
        "ours_samples": rates[ours.name],
        "sibling_samples": rates[sibling.name],
        **sbx_part,
        "warmup_steps": warmup_steps,
        "warmup_seconds": warmup_seconds,
        "compile_seconds": max(compile_seconds) if compile_seconds else None,
        "n_envs": ours.settings.n_envs,
        "settings_source": ours.settings.source,
        "settings_digest": ours.settings.digest,
        "dropped_for_sibling": sibling.dropped,
        "hyperparams": {key: repr(value) for key, value in ours.settings.raw.items()},
    }

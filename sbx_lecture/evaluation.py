"""Evaluation of a policy: periodic deterministic evaluations while ``train`` runs, and ``sbx-lecture eval``.

During training, like SB3's ``EvalCallback``: every ``eval_freq`` environment steps the deterministic policy runs a
few episodes on its own environment (normalised like the training one, statistics synchronised first). Unlike it,
every file is written atomically, the best model is saved so that it loads without unpickling, and a resumed run
keeps the points measured up to the checkpoint it resumed from. ``rl_zoo3.plots.plot_from_file`` and ``all_plots``
read the ``evaluations.npz`` it writes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecFrameStack, VecNormalize, sync_envs_normalization

from sbx_lecture import checkpoints, loading
from sbx_lecture.factory import UsageError, check_run_options, make_environment, resolve_algorithm
from sbx_lecture.infra.files import write_npz
from sbx_lecture.infra.finite import assert_finite_parameters
from sbx_lecture.infra.validation import one_line
from sbx_lecture.loading.zoo_run import zoo_file_loader

EVALUATIONS_FILE = "evaluations.npz"
BEST_MODEL_FILE = "best_model.zip"
#: The normalisation statistics the RL Zoo saves (a pickle, which :func:`sbx_lecture.loading.load_normalization` reads
#: without running it).
ZOO_STATISTICS_FILE = "vecnormalize.pkl"
#: Seed offset of the evaluation environment, so that it never replays the training episodes.
EVAL_SEED_OFFSET = 10_000
#: ``report(steps_done)``: how a caller hears about progress about once a second.
ProgressReport = Callable[[int], None]


@dataclass
class Evaluations:
    """Evaluation points: environment steps and the returns and lengths of each point's episodes."""

    timesteps: list[int] = field(default_factory=list)
    returns: list[list[float]] = field(default_factory=list)
    lengths: list[list[int]] = field(default_factory=list)

    def add(self, steps: int, returns: Any, lengths: Any) -> None:
        """Record a point (replacing one at the same step)."""
        self.truncate(steps - 1)
        self.timesteps.append(steps)
        self.returns.append([float(x) for x in returns])
        self.lengths.append([int(x) for x in lengths])

    def truncate(self, steps: int) -> None:
        """Drop the points measured after ``steps`` (a resumed run measures them again)."""
        kept = sum(step <= steps for step in self.timesteps)
        for column in (self.timesteps, self.returns, self.lengths):
            del column[kept:]

    def curve(self) -> list[tuple[int, float, float]]:
        """(steps, mean return, standard deviation) of each point."""
        return [
            (steps, float(np.mean(returns)), float(np.std(returns)))
            for steps, returns in zip(self.timesteps, self.returns, strict=True)
        ]

    def save(self, path: Path, layout: Callable[[list[list[float]]], np.ndarray] | None = None) -> None:
        """Write the RL Zoo's ``evaluations.npz`` (``timesteps``, ``results``, ``ep_lengths``) atomically.

        :param layout: turns rows of different lengths into a 2-D array (default: shorter rows padded with NaN, as a
            pandas frame pads them)
        """
        rows_to_array = layout or (lambda rows: pd.DataFrame(rows, dtype=float).to_numpy(float))
        arrays: dict[str, Any] = {
            "timesteps": np.array(self.timesteps, dtype=np.int64),
            "results": rows_to_array(self.returns),
            "ep_lengths": rows_to_array([[float(x) for x in row] for row in self.lengths]),
        }
        write_npz(path, arrays)

    @classmethod
    def load(cls, path: Path) -> Evaluations:
        """Read an ``evaluations.npz`` (empty when there is none or it is unreadable)."""
        try:
            with np.load(path, allow_pickle=False) as saved:
                timesteps = [int(x) for x in saved["timesteps"]]
                returns = [[float(x) for x in row if not np.isnan(x)] for row in saved["results"]]
                lengths = [[int(x) for x in row if not np.isnan(x)] for row in saved["ep_lengths"]]
        except (OSError, ValueError, KeyError):
            return cls()
        return cls(timesteps, returns, lengths)


class ProgressCallback(BaseCallback):
    """Tell ``report`` the model's step count about once a second (and at the first step); stop training at
    ``stop_after`` steps (how tests interrupt a run).

    ``report`` may raise :class:`KeyboardInterrupt` to stop ``learn`` at once: that is how a stop request reaches
    a job running in a worker process, which Ctrl-C does not reach.
    """

    def __init__(self, report: ProgressReport | None, stop_after: int | None = None) -> None:
        super().__init__()
        self.report = report
        self.stop_after = stop_after
        self._last = -float("inf")

    def _on_step(self) -> bool:
        now = time.monotonic()
        if self.report is not None and now - self._last >= 1.0:
            self._last = now
            self.report(self.model.num_timesteps)
        return self.stop_after is None or self.model.num_timesteps < self.stop_after


@dataclass(eq=False)
class PeriodicEvaluation(BaseCallback):
    """Evaluate every ``eval_freq`` environment steps on an environment of its own; keep ``evaluations.npz`` and
    the best model in the run folder; evaluate once more when the budget is reached if ``final_episodes`` asks for it.

    Points already in ``evaluations.npz`` up to the model's step count are kept, later ones are measured again.

    :param segment: the run's segment being trained: the run folder, and the algorithm, environment and plugin that
        the best model's file records
    :param run: the run's record: its seed (the evaluation environment's is :data:`EVAL_SEED_OFFSET` above it) and
        its budget (``timesteps``)
    :param eval_freq: environment steps between evaluations, counted over all training environments
    :param episodes: deterministic episodes per evaluation
    :param final_episodes: episodes of the final evaluation (then no periodic point is taken at or past the budget)
    """

    segment: checkpoints.Segment
    run: dict[str, Any]
    eval_freq: int
    episodes: int
    final_episodes: int | None = None

    def __post_init__(self) -> None:
        super().__init__()
        self.evaluations = Evaluations.load(self.segment.run_dir / EVALUATIONS_FILE)
        self.final: tuple[float, float] | None = None
        self.eval_seconds = 0.0

    def _init_callback(self) -> None:
        seed, env_kwargs = int(self.run["seed"]) + EVAL_SEED_OFFSET, self.run["hyperparams"].get("env_kwargs")
        self.eval_env = make_environment(self.segment.metadata["env"], 1, seed, env_kwargs=env_kwargs)
        normalizer = self.model.get_vec_normalize_env()
        if normalizer is not None:
            self.eval_env = VecNormalize(self.eval_env, training=False, norm_reward=False, gamma=normalizer.gamma)

    def _on_training_start(self) -> None:
        self.evaluations.truncate(self.model.num_timesteps)
        if not self.evaluations.timesteps:
            self.evaluate_now(self.episodes)

    def _on_step(self) -> bool:
        steps = self.model.num_timesteps
        due = steps // self.eval_freq > self.evaluations.timesteps[-1] // self.eval_freq
        if due and (self.final_episodes is None or steps < self.run["timesteps"]):
            self.evaluate_now(self.episodes)
        return True

    def _on_training_end(self) -> None:
        if self.final_episodes and self.model.num_timesteps >= self.run["timesteps"]:
            self.final = self.evaluate_now(self.final_episodes)
        self.eval_env.close()

    def evaluate_now(self, episodes: int) -> tuple[float, float]:
        """Evaluate the current policy for ``episodes`` episodes and record the point (and the best model); returns
        the mean return and its standard deviation (the returns are the raw ones that the Monitor wrapper records)."""
        start = time.perf_counter()
        sync_envs_normalization(self.training_env, self.eval_env)
        returns, lengths = evaluate_policy(
            self.model, self.eval_env, n_eval_episodes=episodes, warn=False, return_episode_rewards=True
        )
        self.eval_seconds += time.perf_counter() - start
        self.evaluations.add(self.model.num_timesteps, returns, lengths)  # type: ignore[arg-type]
        self.evaluations.save(self.segment.run_dir / EVALUATIONS_FILE)
        *earlier, (_, mean, std) = self.evaluations.curve()
        if mean > max((point[1] for point in earlier), default=-np.inf):  # a new best
            loading.save(self.model, self.segment.run_dir / BEST_MODEL_FILE, self.segment.metadata)
        return mean, std


# -- ``sbx-lecture eval`` ------------------------------------------------------------------------------------------


@dataclass
class EvaluationResult:
    """Mean and standard deviation of the episode return."""

    mean: float
    std: float
    episodes: int
    algo: str
    env_id: str
    normalization: Path | None = None


def find_normalization(model_path: Path, env_id: str) -> Path | None:
    """The normalisation statistics that belong to ``model_path``, wherever our ``train`` or the RL Zoo put them.

    Looked for in order: beside the model (``vecnormalize.npz``, as in a run folder or a checkpoint bundle, then the
    zoo's ``vecnormalize.pkl``), in the zoo's ``<env_id>/`` folder beside it, and in the newest verified checkpoint
    bundle of the run folder the model is in.
    """
    folder = model_path.parent
    names = (checkpoints.NORMALIZATION_MEMBER, ZOO_STATISTICS_FILE, f"{env_id}/{ZOO_STATISTICS_FILE}")
    found = next((folder / name for name in names if (folder / name).is_file()), None)
    if found is None:
        with suppress(checkpoints.CheckpointError):
            found = checkpoints.newest_valid_bundle(folder)[0].member(checkpoints.NORMALIZATION_MEMBER)
    return found


def read_zoo_run(model_path: Path, env_id: str | None = None, trusted: bool = False) -> dict[str, Any]:
    """What the RL Zoo recorded about a model of its run folder (``<env>.zip``, ``best_model.zip`` or a checkpoint
    beside ``<env>/args.yml`` and ``<env>/config.yml``): ``algo``, ``env`` and ``env_kwargs`` as its ``enjoy`` reads
    them (``args.yml``'s ``env_kwargs`` over ``config.yml``'s), and the section's ``env_wrapper`` and
    ``frame_stack``; empty when the model is not in one. The statistics
    ``<env>/vecnormalize.pkl``, which the zoo saves only when it normalises, are found by :func:`find_normalization`.

    The YAML files are read as plain data plus the two Python types the zoo writes there (``OrderedDict`` and
    ``tuple``); another Python tag is refused unless ``trusted``.
    """
    found = [model_path.parent / env_id] if env_id else [path.parent for path in model_path.parent.glob("*/args.yml")]
    if len(found) != 1 or not (found[0] / "args.yml").is_file():
        return {}
    read: dict[str, Any] = {}
    for name in ("config.yml", "args.yml"):
        path = found[0] / name
        try:
            with open(path) as handle:
                content = yaml.load(handle, Loader=yaml.UnsafeLoader if trusted else zoo_file_loader())
            keys = ("algo", "env", "env_kwargs", "env_wrapper", "frame_stack")
            read.update({key: content[key] for key in keys if content.get(key) is not None})
        except FileNotFoundError:
            continue
        except loading.UntrustedContentError:
            raise
        except (OSError, ValueError, TypeError, LookupError, AttributeError, yaml.YAMLError) as exc:
            raise UsageError(f"{path} is not the YAML mapping the RL Zoo writes ({one_line(exc)})") from None
    return read


def evaluate(
    model_path: Path,
    env_id: str | None = None,
    episodes: int = 10,
    algo: str | None = None,
    deterministic: bool = True,
    seed: int = 0,
    *,
    trusted: bool = False,
    device: str = "auto",
) -> EvaluationResult:
    """Load ``model_path`` safely and run it for ``episodes`` episodes (algorithm and env from the model if not given).

    Normalisation statistics saved with the model (see :func:`find_normalization`) are applied; a model whose
    weights hold NaN or infinities is refused. A zoo run's environment is built as the zoo's ``enjoy`` builds it:
    with its ``frame_stack``, and with its ``env_wrapper`` only when ``trusted`` (the zoo imports the classes that
    ``config.yml`` names).

    :param trusted: allow unpickling what the model file (or its statistics) would need
    """
    check_run_options(seed, device, episodes=episodes)
    saved = loading.read_model_metadata(model_path)  # checks the zip first: a broken file is named before anything
    metadata = {**read_zoo_run(model_path, env_id, trusted), **saved}
    algo = algo or metadata.get("algo")
    env_id = env_id or metadata.get("env")
    if algo is None:
        raise UsageError(f"cannot tell which algorithm saved {model_path}: pass --algo NAME")
    if env_id is None:
        raise UsageError(f"cannot tell which environment {model_path} was trained on: pass the ENV argument")
    spec, _ = resolve_algorithm(algo)
    stats = find_normalization(model_path, env_id)
    wrapper = metadata.get("env_wrapper")
    if wrapper is not None and not trusted:
        raise UsageError(
            f"{model_path}'s run wraps its environment in {wrapper} (config.yml's env_wrapper), which the zoo imports "
            "by name: pass --trusted to apply it, as the zoo's enjoy does"
        )
    wrapper_class = None
    if wrapper is not None:
        from rl_zoo3.utils import get_wrapper_class

        wrapper_class = get_wrapper_class({"env_wrapper": wrapper})
    env = make_environment(env_id, 1, seed, env_kwargs=metadata.get("env_kwargs"), wrapper_class=wrapper_class)
    if stats is not None:  # as saved: the statistics stay fixed, and rewards unnormalised
        env = loading.load_normalization(stats, env, trusted=trusted)
        env.training = env.norm_reward = False
    if metadata.get("frame_stack"):  # after the statistics, as the zoo stacks them
        env = VecFrameStack(env, int(metadata["frame_stack"]))
    try:
        model = loading.load(model_path, env=env, trusted=trusted, device=device, algo=spec.name)
        assert_finite_parameters(
            model, hint=f"{model_path} cannot act; use an earlier checkpoint from its run folder's checkpoints/"
        )
        mean, std = evaluate_policy(model, env, n_eval_episodes=episodes, deterministic=deterministic)
    finally:
        env.close()
    return EvaluationResult(float(mean), float(std), episodes, spec.name, env_id, stats)  # type: ignore[arg-type]

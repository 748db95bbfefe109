"""Benchmark suites as data: which algorithm runs on which environment, for how many steps, with which overrides.

Every suite is a YAML file (JSON is YAML too), read by :func:`load_suite_file`: the built-in ones are the files of
:data:`SUITE_FILES`, a user's is given by its path. A learning suite's rows are :class:`RunJob` templates; each
becomes one run per seed. A speed suite's rows are :class:`SpeedJob` s, each timing one of our algorithms against
its SB3 sibling in the same process. A :class:`FigureJob` is a measurement that is not a training run (a figure of
:mod:`.figures`, drawn by the command line). Hyperparameters are not written here: they come from the algorithm's
rl-zoo file (see :mod:`sbx_lecture.zoo_config`); a row only overrides what a comparison needs.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml

from sbx_lecture.infra.validation import one_line
from sbx_lecture.zoo_config import ZooSettings, settings_digest, split_hyperparams, zoo_settings

#: The hyperparameter file of runs with their class's own constructor defaults (only ``policy: MlpPolicy``).
CONSTRUCTOR_DEFAULTS = Path(__file__).with_name("constructor_defaults.yml")
#: ``--seeds held-out``: each run's held-out seeds (:meth:`RunJob.held_out_seeds`), what published results use.
HELD_OUT = "held-out"
#: The built-in suites: one suite file each, ``<name>.yml``.
SUITE_FILES = Path(__file__).with_name("suite_files")

#: ``families.yml``: the algorithm families and each lecture algorithm's siblings.
_COMPARISONS = yaml.safe_load(Path(__file__).with_name("families.yml").read_text())
#: Family of each algorithm, in family order (the plots' colours follow it; the learning-curve plots put one
#: family's algorithms side by side).
FAMILIES: dict[str, str] = {algo: family for family, algos in _COMPARISONS["families"].items() for algo in algos}
#: Each lecture algorithm and the SB3 / sb3-contrib algorithms it is measured against.
SIBLINGS: dict[str, tuple[str, ...]] = {algo: tuple(others) for algo, others in _COMPARISONS["siblings"].items()}

#: The statuses of a job with a result: finished by this command, or by an earlier one.
FINISHED = ("done", "skipped")


def family_of(algo: str) -> str:
    """The family ``algo`` is plotted with (its own name for an algorithm outside :data:`FAMILIES`)."""
    return FAMILIES.get(algo, algo)


@dataclass(frozen=True)
class RunJob:
    """One training run; in a suite, a row whose seed and evaluation settings :func:`expand` fills in.

    :param algo: registry name
    :param env_id: gymnasium environment id
    :param timesteps: training budget (0: the zoo entry's ``n_timesteps``, settled when the run starts)
    :param seed: random seed of the run
    :param hyperparams: overrides of the zoo entry, zoo-style (``{"n_steps": 256, "learning_rate": "lin_1e-3"}``)
    :param eval_freq: environment steps between evaluations (0: ``timesteps / 20``)
    :param eval_episodes: episodes per evaluation during training
    :param final_eval_episodes: episodes of the final evaluation
    :param own_defaults: train with the class's own constructor defaults instead of its zoo entry
        (:data:`CONSTRUCTOR_DEFAULTS`); ``hyperparams`` still apply
    """

    algo: str
    env_id: str
    timesteps: int = 0
    seed: int = 0
    hyperparams: dict[str, Any] = field(default_factory=dict)
    eval_freq: int = 0
    eval_episodes: int = 5
    final_eval_episodes: int = 10
    own_defaults: bool = False

    kind: ClassVar[str] = "run"

    @property
    def conf_file(self) -> Path | None:
        """The hyperparameter file the run reads instead of its algorithm's zoo file (``None``: the zoo file)."""
        return CONSTRUCTOR_DEFAULTS if self.own_defaults else None

    @property
    def folder(self) -> Path:
        """Relative run folder: ``runs/<algo>/<env>/<budget>[-defaults][-<overrides hash>]/seed_<k>``.

        Suites that contain the same run share its folder, so it is trained once.
        """
        budget = f"t{self.timesteps}" if self.timesteps else "tzoo"
        if self.own_defaults:
            budget += "-defaults"
        if self.hyperparams:
            budget += "-" + settings_digest(self.hyperparams)
        return Path("runs", self.algo, self.env_id, budget, f"seed_{self.seed}")

    @property
    def label(self) -> str:
        """Short text for progress lines."""
        return f"{self.algo} {self.env_id} seed {self.seed}"

    @property
    def algos(self) -> tuple[str, ...]:
        """The algorithms of the job (what ``--algos`` filters)."""
        return (self.algo,)

    def settings(self) -> ZooSettings:
        """The settings the run trains with: its zoo entry (or :data:`CONSTRUCTOR_DEFAULTS`) with its overrides."""
        return zoo_settings(self.algo, self.env_id, dict(self.hyperparams), self.conf_file)

    @property
    def held_out_seeds(self) -> range:
        """The seeds this run's published results come from (the protocol of docs/benchmarks.md): seeds 0-4 for an
        RL Zoo file's own entry, unchanged, whose settings were chosen elsewhere; seeds 5-9 for every setting chosen
        here (our zoo entries, the constructor defaults, a suite's overrides), which seeds 0-4 chose."""
        chosen_elsewhere = not (self.own_defaults or self.hyperparams) and self.settings().source.startswith("rl_zoo3/")
        return range(0, 5) if chosen_elsewhere else range(5, 10)

    def outcome(self, status: str, folder: Path, **details: Any) -> dict[str, Any]:
        """The head of this run's result in ``folder``: what was run, ``status`` and the ``details`` (``error``,
        ``detail``)."""
        head: dict[str, Any] = {"kind": self.kind, "status": status, "algo": self.algo, "env": self.env_id}
        head.update(seed=self.seed, family=family_of(self.algo), timesteps=self.timesteps)
        defaults = {"own_defaults": True} if self.own_defaults else {}
        return {**head, **defaults, "folder": str(folder), **details}


@dataclass(frozen=True)
class SpeedJob:
    """One speed measurement: one of our algorithms timed against one sibling on one environment, at identical
    settings.

    :param ours: registry name of the lecture's algorithm (its zoo entry sets the hyperparameters of both)
    :param sibling: registry name of the SB3 / sb3-contrib algorithm
    :param env_id: gymnasium environment id
    :param timesteps: environment steps per timed ``learn`` call
    :param repeats: interleaved repetitions (in a suite: the suite's ``repeats``, filled in by :func:`expand`)
    :param hyperparams: overrides applied to both
    :param not_shared: our arguments whose name the sibling takes with another meaning (not passed to it)
    :param sbx: class name in SBX (``sbx-rl``, SB3's API in JAX) timed as a second sibling with the same
        arguments as the SB3 one, when SBX is installed (the ``sbx`` extra); ``None``: no SBX sibling
    :param own_defaults: give every contestant its own constructor defaults instead of our zoo entry (the speed a
        user gets without choosing settings); ``hyperparams`` still apply to all of them
    :param device: the torch device our algorithm and its sibling are timed on
    """

    ours: str
    sibling: str
    env_id: str
    timesteps: int = 20_000
    repeats: int = 5
    hyperparams: dict[str, Any] = field(default_factory=dict)
    not_shared: tuple[str, ...] = ()
    kind: ClassVar[str] = "speed"
    sbx: str | None = None
    own_defaults: bool = False
    device: str = "cpu"

    @property
    def folder(self) -> Path:
        """Relative folder of the measurement (one per torch device: a GPU's rates are another measurement)."""
        named = {"not_shared": sorted(self.not_shared), "own_defaults": self.own_defaults}
        named["device"] = "" if self.device == "cpu" else self.device  # CPU folders name no device
        varied = {**self.hyperparams, **{key: value for key, value in named.items() if value}}
        suffix = f"-{settings_digest(varied)}" if varied else ""
        measurement = f"t{self.timesteps}x{self.repeats}{suffix}"
        return Path("speed") / f"{self.ours}_vs_{self.sibling}" / self.env_id / measurement

    @property
    def label(self) -> str:
        """Short text for progress lines."""
        on = f" on {self.device}" if self.device != "cpu" else ""
        return f"speed {self.ours}/{self.sibling} {self.env_id}{on}"

    @property
    def algos(self) -> tuple[str, ...]:
        """The algorithms of the pair (a speed row is kept if ``--algos`` names either)."""
        return (self.ours, self.sibling)

    def lacks_sbx(self, result: dict[str, Any]) -> bool:
        """Whether ``result`` was measured without the SBX sibling that the pair names and that is installed now:
        such a pair is measured again, every contestant of it (ratios hold only within one run)."""
        return self.sbx is not None and "sbx_steps_per_second" not in result and _sbx_installed()

    def settings(self, algo: str | None = None) -> ZooSettings:
        """What the pair gives its contestants: ``algo``'s (default: ours') zoo entry for the environment with the
        overrides, or, for a pair of each one's own defaults, the overrides alone."""
        if not self.own_defaults:
            return zoo_settings(algo or self.ours, self.env_id, self.hyperparams)
        zoo, kwargs = split_hyperparams(self.hyperparams)
        source = "each contestant's constructor defaults" + (" + overrides" if self.hyperparams else "")
        return ZooSettings(dict(self.hyperparams), zoo, kwargs, source)

    def outcome(self, status: str, folder: Path, **details: Any) -> dict[str, Any]:
        """The head of this measurement's result in ``folder``: what was timed, how, ``status`` and the ``details``
        (``error``, ``detail``)."""
        head: dict[str, Any] = {"kind": self.kind, "status": status, "ours": self.ours, "sibling": self.sibling}
        head.update(env=self.env_id, timesteps=self.timesteps, repeats=self.repeats)
        head.update(own_defaults=self.own_defaults, device=self.device)
        overrides = {key: repr(value) for key, value in self.hyperparams.items()}
        return {**head, "overrides": overrides, "folder": str(folder), **details}


@dataclass(frozen=True)
class FigureJob:
    """One figure of :mod:`.figures`: a measurement that is not a training run, with its parameters.

    :param name: the figure (a key of :data:`sbx_lecture.bench.figures.FIGURES`)
    :param params: keyword arguments of the figure's function; ``timesteps`` is scaled by ``--timesteps-scale``
    :param algos: the algorithms it involves (for ``--algos``)
    :param env_id: the environment it uses (for ``--envs``)
    """

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    algos: tuple[str, ...] = ()
    env_id: str = ""
    kind: ClassVar[str] = "figure"

    @property
    def folder(self) -> Path:
        """Relative folder of the figure: ``figures/<name>/<parameters hash>``."""
        return Path("figures") / self.name / settings_digest(self.params)

    @property
    def label(self) -> str:
        """Short text for progress lines."""
        return f"figure {self.name}"

    def outcome(self, status: str, folder: Path, **details: Any) -> dict[str, Any]:
        """The head of this figure's result in ``folder``: which one, with which parameters, ``status`` and the
        ``details`` (``error``, ``detail``)."""
        head = {"kind": self.kind, "status": status, "name": self.name, "params": self.params}
        return {**head, "folder": str(folder), **details}


Job = RunJob | SpeedJob | FigureJob


@dataclass(frozen=True)
class Suite:
    """A named benchmark: learning rows (with seeds), speed rows, figures.

    :param name: the name given on the command line
    :param description: one line for ``--list``
    :param entries: learning rows (run templates without seed)
    :param speed_entries: speed rows
    :param figures: measurements that are not training runs (:mod:`.figures`)
    :param seeds: default number of seeds (0, 1, ...)
    :param eval_points: evaluations over the budget of a run (the curve's resolution)
    :param eval_episodes: deterministic episodes per evaluation during training
    :param final_eval_episodes: deterministic episodes of the final evaluation
    :param repeats: interleaved repetitions of each speed measurement
    """

    name: str
    description: str
    entries: tuple[RunJob, ...] = ()
    speed_entries: tuple[SpeedJob, ...] = ()
    figures: tuple[FigureJob, ...] = ()
    seeds: int = 3
    eval_points: int = 20
    eval_episodes: int = 5
    final_eval_episodes: int = 10
    repeats: int = 5


def _sbx_installed() -> bool:
    """Whether SBX (``sbx-rl``, the ``sbx`` extra) can be imported, without importing it (and JAX)."""
    return importlib.util.find_spec("sbx") is not None


class SuiteError(ValueError):
    """An unknown suite name or a malformed suite file."""


def load_suite_file(path: Path) -> Suite:
    """Read a suite from a YAML (or JSON) file.

    The file holds the :class:`Suite` fields (``name`` defaults to the file's stem); ``runs`` lists learning
    rows (``algo``, ``env``, optional ``timesteps``, ``hyperparams`` and ``own_defaults``), ``speed`` lists speed
    rows (``ours``, ``sibling``, ``env``, optional ``timesteps``, ``hyperparams``, ``not_shared``, ``sbx`` and
    ``own_defaults``), ``figures`` lists figures (``name``, optional ``params``, ``algos`` and ``env``). A run's
    ``algo`` and ``env`` may each be a list: the row stands for every algorithm on every environment, environment by
    environment::

        name: tiny
        seeds: 2
        runs:
          - {algo: ppo, env: CartPole-v1, timesteps: 3000, hyperparams: {n_steps: 64}}
          - {algo: [a2c, trpo], env: [CartPole-v1, Acrobot-v1], timesteps: 3000}
    """
    try:  # safe_load: a Python tag is refused, never constructed
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise SuiteError(f"cannot read the suite file {path} ({one_line(exc)}): check its YAML or JSON") from None
    if not isinstance(data, dict):
        raise SuiteError(f"suite file {path} must hold a mapping with 'runs', 'speed' or 'figures'")
    try:
        entries = tuple(
            RunJob(algo, env_id, **_options(row, timesteps=int, hyperparams=dict, own_defaults=bool))
            for row in data.get("runs") or []
            for env_id in _one_or_more(row["env"])
            for algo in _one_or_more(row["algo"])
        )
        speed_options = {"timesteps": int, "hyperparams": dict, "not_shared": tuple, "sbx": str, "own_defaults": bool}
        speed = tuple(
            SpeedJob(row["ours"], row["sibling"], row["env"], **_options(row, **speed_options))
            for row in data.get("speed") or []
        )
        figures = tuple(
            FigureJob(str(row["name"]), env_id=str(row.get("env", "")), **_options(row, params=dict, algos=tuple))
            for row in data.get("figures") or []
        )
    except (KeyError, TypeError) as exc:
        raise SuiteError(
            f"suite file {path}: every run needs 'algo' and 'env', every speed row 'ours', "
            f"'sibling' and 'env', every figure 'name' ({exc!r})"
        ) from None
    if not entries and not speed and not figures:
        raise SuiteError(f"suite file {path} lists no 'runs', 'speed' or 'figures' rows")
    counts = dict.fromkeys(("seeds", "eval_points", "eval_episodes", "final_eval_episodes", "repeats"), int)
    name, description = str(data.get("name", path.stem)), str(data.get("description", f"from {path}"))
    return Suite(name, description, entries, speed, figures, **_options(data, **counts))


def _options(row: dict[str, Any], **types: Callable[[Any], Any]) -> dict[str, Any]:
    """The optional keys ``types`` names that a suite file's ``row`` (or the file itself) gives (not as null), each
    converted by its type."""
    return {key: convert(row[key]) for key, convert in types.items() if row.get(key) is not None}


def _one_or_more(value: Any) -> list[Any]:
    """A suite file's name or list of names, as a list."""
    return list(value) if isinstance(value, list) else [value]


#: The built-in suites by name.
SUITES: dict[str, Suite] = {path.stem: load_suite_file(path) for path in sorted(SUITE_FILES.glob("*.yml"))}


def get_suite(name: str) -> Suite:
    """A built-in suite by name, or a suite file by path."""
    if name in SUITES:
        return SUITES[name]
    path = Path(name)
    if path.suffix in (".yml", ".yaml", ".json"):
        if not path.exists():
            raise SuiteError(f"suite file {path} does not exist")
        return load_suite_file(path)
    raise SuiteError(f"unknown suite {name!r}: choose one of {', '.join(SUITES)} or give a .yml/.json suite file")


@dataclass(frozen=True)
class Selection:
    """How the command line narrows and scales a suite.

    :param seeds: the seeds to run (``None``: the suite's count, from 0; :data:`HELD_OUT`: each run's held-out
        seeds, :meth:`RunJob.held_out_seeds`)
    :param timesteps_scale: factor on every budget (0.1 for a quick look)
    :param algos: keep only these algorithms (``None``: all)
    :param envs: keep only these environments (``None``: all)
    :param device: the torch device the speed pairs are timed on (training runs and figures use the CPU)
    """

    seeds: range | str | None = None
    timesteps_scale: float = 1.0
    algos: frozenset[str] | None = None
    envs: frozenset[str] | None = None
    device: str = "cpu"

    def keeps(self, job: Job) -> bool:
        """Whether a suite row (or job) passes the filters: its environment, and any of its algorithms."""
        if self.envs is not None and job.env_id not in self.envs:
            return False
        return self.algos is None or not self.algos.isdisjoint(job.algos)

    def scale(self, timesteps: int) -> int:
        """The scaled budget (at least 1000 steps, rounded to a hundred; 0, the zoo's budget, stays 0)."""
        if self.timesteps_scale == 1.0 or not timesteps:
            return timesteps
        return max(1_000, math.ceil(timesteps * self.timesteps_scale / 100.0) * 100)


def seed_range(text: str) -> range | str:
    """``"K"``: seeds 0 to K-1; ``"A-B"``: seeds A to B inclusive; ``"held-out"``: :data:`HELD_OUT`."""
    if text == HELD_OUT:
        return HELD_OUT
    first, dash, last = text.partition("-")
    try:
        seeds = range(int(first), int(last) + 1) if dash else range(int(first))
    except ValueError:
        raise SuiteError(f"--seeds takes a count K or a range A-B, not {text!r}") from None
    if not seeds or seeds.start < 0:
        raise SuiteError(f"--seeds {text} names no seed: give a count of at least 1 or a range A-B with 0 <= A <= B")
    return seeds


def expand(suite: Suite, selection: Selection, zoo_budget: Any = None) -> list[Job]:
    """The suite's jobs after filtering and scaling, seed-major so that early results cover every algorithm.

    :param zoo_budget: ``(algo, env_id) -> int`` for rows without a budget (``None``: settled at run time)
    """
    seeds = selection.seeds if isinstance(selection.seeds, range) else range(suite.seeds)
    rows = [
        (entry, entry.held_out_seeds if selection.seeds == HELD_OUT else seeds)
        for entry in filter(selection.keeps, suite.entries)
    ]
    evaluation: dict[str, Any] = dict(eval_episodes=suite.eval_episodes, final_eval_episodes=suite.final_eval_episodes)
    jobs: list[Job] = []
    all_seeds = sorted({seed for _, entry_seeds in rows for seed in entry_seeds})
    for seed, (entry, entry_seeds) in itertools.product(all_seeds, rows):
        if seed not in entry_seeds:
            continue
        budget = selection.scale(entry.timesteps or (zoo_budget(entry.algo, entry.env_id) if zoo_budget else 0))
        every = max(budget // suite.eval_points, 1) if budget else 0
        jobs.append(dataclasses.replace(entry, timesteps=budget, seed=seed, eval_freq=every, **evaluation))
    for speed in filter(selection.keeps, suite.speed_entries):
        scaled = selection.scale(speed.timesteps)
        jobs.append(dataclasses.replace(speed, timesteps=scaled, repeats=suite.repeats, device=selection.device))
    for figure in filter(selection.keeps, suite.figures):
        params = {
            key: selection.scale(int(value)) if key == "timesteps" else value for key, value in figure.params.items()
        }
        jobs.append(dataclasses.replace(figure, params=params))
    return jobs

"""Where a benchmark run's hyperparameters come from.

- The lecture's algorithms (and any plugin algorithm that registers a zoo file): their own rl-zoo yml, read by
  :func:`sbx_lecture.training.zoo_defaults`.
- SB3 and sb3-contrib algorithms: the RL Baselines3 Zoo's published ``rl_zoo3/hyperparams/<algo>.yml``. The zoo
  still names the MuJoCo tasks ``-v4``; a ``-v5`` id falls back to the newest entry of the same task.
- Either way the ``default`` entry when the environment has none, then the suite entry's overrides on top.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from sbx_lecture.training import DEFAULT_TIMESTEPS, prepare_hyperparams, zoo_defaults

_VERSION = re.compile(r"^(?P<base>.+)-v(?P<version>\d+)$")


@dataclass
class RunSettings:
    """An algorithm's settings on an environment, split as :func:`sbx_lecture.training.prepare_hyperparams` does.

    :param raw: the zoo entry with overrides, as written (for ``run.json``)
    :param zoo: keys that ``train`` applies itself (``n_envs``, ``normalize``, ``policy``, action noise, ...)
    :param kwargs: constructor keyword arguments
    :param source: which file and entry the values came from
    """

    raw: dict[str, Any]
    zoo: dict[str, Any]
    kwargs: dict[str, Any]
    source: str

    @property
    def n_envs(self) -> int:
        """Parallel training environments."""
        return int(self.zoo.get("n_envs", 1))

    @property
    def n_timesteps(self) -> int:
        """The zoo's budget (the library default without one)."""
        return int(float(self.zoo.get("n_timesteps", DEFAULT_TIMESTEPS)))

    @property
    def normalize(self) -> Any:
        """VecNormalize options (``False``: none)."""
        return self.zoo.get("normalize", False)

    @property
    def gamma(self) -> float:
        """Discount, which VecNormalize's reward scaling needs."""
        return float(self.kwargs.get("gamma", 0.99))


@cache
def _rl_zoo_file(algo: str) -> dict[str, Any]:
    spec = importlib.util.find_spec("rl_zoo3")
    if spec is None or not spec.submodule_search_locations:
        return {}
    for location in spec.submodule_search_locations:
        path = Path(location) / "hyperparams" / f"{algo}.yml"
        if path.exists():
            import yaml

            return dict(yaml.safe_load(path.read_text()) or {})
    return {}


def _closest_entry(entries: dict[str, Any], env_id: str) -> tuple[str, dict[str, Any]] | None:
    if env_id in entries:
        return env_id, dict(entries[env_id] or {})
    match = _VERSION.match(env_id)
    if match is not None:
        versions = [
            (int(other.group("version")), key)
            for key in entries
            if (other := _VERSION.match(str(key))) is not None and other.group("base") == match.group("base")
        ]
        if versions:
            key = max(versions)[1]
            return key, dict(entries[key] or {})
    return None


def zoo_entry(algo: str, env_id: str) -> tuple[dict[str, Any], str]:
    """The zoo hyperparameters of ``algo`` on ``env_id`` and a text naming their source."""
    from sbx_lecture.plugins import get_plugin_manager

    spec = get_plugin_manager().registry.spec(algo)
    own_file = spec.resolve_zoo_hyperparams()
    if own_file is not None and Path(own_file).exists():
        import yaml

        entries = yaml.safe_load(Path(own_file).read_text()) or {}
        found = _closest_entry(entries, env_id)
        if found is not None:
            return found[1], f"{Path(own_file).name}[{found[0]}]"
        return zoo_defaults(spec, env_id), f"{Path(own_file).name}[default]"
    entries = _rl_zoo_file(spec.name)
    found = _closest_entry(entries, env_id)
    if found is not None:
        return found[1], f"rl_zoo3/hyperparams/{spec.name}.yml[{found[0]}]"
    if "default" in entries:
        return dict(entries["default"] or {}), f"rl_zoo3/hyperparams/{spec.name}.yml[default]"
    return {}, "library defaults"


def run_settings(algo: str, env_id: str, overrides: dict[str, Any] | None = None) -> RunSettings:
    """The zoo entry of ``algo`` on ``env_id`` with ``overrides`` on top, parsed into (zoo keys, kwargs)."""
    entry, source = zoo_entry(algo, env_id)
    raw = {**entry, **(overrides or {})}
    if overrides:
        source += " + suite overrides"
    zoo, kwargs = prepare_hyperparams(raw)
    return RunSettings(raw, zoo, kwargs, source)


def zoo_budget(algo: str, env_id: str) -> int:
    """The zoo's ``n_timesteps`` for ``algo`` on ``env_id`` (for suite entries that give no budget)."""
    return run_settings(algo, env_id).n_timesteps

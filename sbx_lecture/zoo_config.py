"""The one reader of RL Zoo hyperparameter files, used by ``train``, ``bench`` and the zoo bridge.

- **Which file**: a ``-conf FILE`` the user names; else the yml the algorithm registered (ours ship in
  ``zoo_configs/``); else the RL Zoo's own ``rl_zoo3/hyperparams/<algo>.yml``; else none (library defaults).
- **Which section**: one rule for ``train``, ``bench`` and the zoo bridge (``sbx-lecture zoo train`` and the plain
  ``python -m rl_zoo3.train``, whose ``read_hyperparameters`` the bridge adapts): the environment's exact id; else
  the same task's newest older version (the zoo still names the MuJoCo tasks ``-v4``, so ``Hopper-v5`` reads
  ``Hopper-v4``); else the zoo's own fallbacks, ``atari`` for Atari games, then ``default``.
- **Which keys**: the zoo keys ``train`` applies itself (``n_envs``, ``n_timesteps``, ``normalize``, ``policy``, action
  noise) are split from the constructor arguments; text values are parsed once (``lin_0.001`` becomes a schedule,
  ``dict(net_arch=[64])`` a dict, never by ``eval``); keys only the zoo itself can apply are named in a warning.
  ``sbx-lecture zoo`` gives rl_zoo3 the values it would ``eval`` parsed the same way (:func:`zoo_value`).

Every run records the file and section it used (:attr:`ZooSettings.source`).
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sbx_lecture.hyperparams import ZOO_KEYS, ZOO_ONLY_KEYS, HyperparameterError, parse_value
from sbx_lecture.infra.validation import (
    InvalidValueError,
    check_common_arguments,
    one_line,
    require_integer,
    require_number,
)
from sbx_lecture.registry import did_you_mean

DEFAULT_TIMESTEPS = 100_000
#: Keys whose values are names, kept as text rather than parsed (``noise_type: ornstein-uhlenbeck``).
TEXT_KEYS = ("policy", "noise_type")
_VERSION = re.compile(r"^(?P<task>.+)-v(?P<version>\d+)$")
#: Keys of a section whose text rl_zoo3 runs with ``eval`` (``policy_kwargs: "dict(net_arch=[64])"``).
EVALUATED_KEYS = ("policy_kwargs", "replay_buffer_class", "replay_buffer_kwargs", "monitor_kwargs", "normalize")


class ZooConfigError(ValueError):
    """A hyperparameter file that cannot be read or used."""


@dataclass
class ZooSettings:
    """An algorithm's settings on an environment: the zoo entry with overrides, split and parsed.

    :param raw: the entry with the overrides on top, as written (for ``run.json``)
    :param zoo: keys that ``train`` applies itself (``n_envs``, ``normalize``, ``policy``, action noise, ...)
    :param kwargs: constructor keyword arguments
    :param source: which file and section the values came from (``"library defaults"`` without one)
    """

    raw: dict[str, Any]
    zoo: dict[str, Any]
    kwargs: dict[str, Any]
    source: str

    @property
    def digest(self) -> str:
        """Eight hex digits that identify what a run trains with: the entry and the overrides as written, the budget
        (``n_timesteps``) left out, since a benchmark run's folder names its budget."""
        return settings_digest({key: value for key, value in self.raw.items() if key != "n_timesteps"})

    @property
    def n_envs(self) -> int:
        """Parallel training environments."""
        return int(self.zoo.get("n_envs", 1))

    @property
    def n_timesteps(self) -> int:
        """The zoo's budget (the library default without one)."""
        return int(self.zoo.get("n_timesteps", DEFAULT_TIMESTEPS))

    @property
    def normalize(self) -> Any:
        """VecNormalize options (``False``: none)."""
        return self.zoo.get("normalize", False)

    @property
    def gamma(self) -> float:
        """Discount, which VecNormalize's reward scaling needs."""
        return float(self.kwargs.get("gamma", 0.99))


def select_section(sections: Mapping[str, Any], env_id: str) -> str | None:
    """The section of a zoo file that applies to ``env_id`` (the rule of the module docstring), or ``None``."""
    if env_id in sections:
        return env_id
    wanted = _VERSION.match(env_id)
    if wanted is not None:
        older = [
            (int(other["version"]), key)
            for key in sections
            if (other := _VERSION.match(str(key))) and other["task"] == wanted["task"]
            if int(other["version"]) < int(wanted["version"])
        ]
        if older:
            return max(older)[1]
    if "atari" in sections:  # for an Atari game only
        import gymnasium as gym

        if "AtariEnv" in str(getattr(gym.envs.registry.get(env_id), "entry_point", "")):
            return "atari"
    return "default" if "default" in sections else None


def section_for(sections: Mapping[str, Any], env_id: str, algo: str, path: str | Path) -> tuple[str, dict[str, Any]]:
    """The section of the file ``path`` (read as ``sections``) that ``algo`` uses on ``env_id``: name and a copy.

    :raises ZooConfigError: when there is none, naming the closest sections
    """
    name = select_section(sections, env_id)
    if name is None:
        hint = did_you_mean(env_id, sections, f"sections: {', '.join(sections) or 'none'}")
        raise ZooConfigError(
            f"Hyperparameters not found for {algo}-{env_id} in {path}: it has no section for {env_id} (nor an "
            f"older version of it, nor 'default'); add one ({hint})"
        )
    return name, dict(sections[name] or {})


def zoo_file(algo: str) -> Path | None:
    """The hyperparameter file of a registered algorithm: its own registered yml, else rl_zoo3's shipped
    ``hyperparams/<algo>.yml`` (``None`` when the zoo, or its file for ``algo``, is missing)."""
    from sbx_lecture.plugins import get_plugin_manager

    spec = get_plugin_manager().registry.spec(algo)
    zoo = importlib.util.find_spec("rl_zoo3")  # the package's location, without importing it
    shipped = Path(zoo.origin).parent / "hyperparams" / f"{spec.name}.yml" if zoo is not None and zoo.origin else None
    return spec.resolve_zoo_hyperparams() or (shipped if shipped is not None and shipped.is_file() else None)


def read_sections(path: Path) -> dict[str, Any]:
    """The sections of a zoo yml, read safely (no Python tags)."""
    import yaml

    if not path.is_file():  # a -conf typo, or an algorithm with no file of its own nor of the zoo's
        missing = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise ZooConfigError(f"hyperparameter file {path} {missing}: pass -conf FILE.yml (check its path)")
    try:
        content = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ZooConfigError(f"cannot read the hyperparameter file {path} ({one_line(exc)}): check its YAML") from None
    if content is None:
        return {}
    if not isinstance(content, dict) or not all(isinstance(v, dict) or v is None for v in content.values()):
        raise ZooConfigError(f"hyperparameter file {path} must map environment ids to sections of key: value pairs")
    return content


def zoo_entry(algo: str, env_id: str, conf_file: Path | None = None) -> tuple[dict[str, Any], str]:
    """The raw zoo section of ``algo`` on ``env_id`` and a text naming its file and section.

    :param conf_file: read this file instead of the algorithm's (the zoo's ``-conf``); it must have a section
    """
    path = conf_file if conf_file is not None else zoo_file(algo)
    sections = read_sections(path) if path is not None else {}
    if path is None or (conf_file is None and select_section(sections, env_id) is None):
        return {}, "library defaults"
    name, section = section_for(sections, env_id, algo, path)
    return section, f"{_shown_path(path)}[{name}]"


def _shown_path(path: Path) -> str:
    """``rl_zoo3/hyperparams/ppo.yml`` or ``sbx_lecture/zoo_configs/tnpg.yml``: no machine-specific prefix."""
    parts = path.resolve().parts
    for anchor in ("rl_zoo3", "sbx_lecture", "zoo_configs"):
        if anchor in parts:
            return "/".join(parts[parts.index(anchor) :])
    return str(path)


def split_hyperparams(raw: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split zoo-style ``raw`` values into (zoo keys, constructor keyword arguments), parsing text values once and
    checking what can be checked before the algorithm is built."""
    zoo: dict[str, Any] = {}
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, str) and key not in TEXT_KEYS:
            value = parse_value(value)
        else:  # a copy: SB3 adds its own keys to the policy_kwargs it is given, and ``raw`` is the record
            value = copy.deepcopy(value)
        if key in ZOO_KEYS:
            zoo[key] = value
        elif key in ZOO_ONLY_KEYS:
            warnings.warn(f"hyperparameter {key!r} is applied by the RL Zoo only: use `sbx-lecture zoo train`")
        else:
            kwargs[key] = value
    for key in ("n_envs", "n_timesteps"):
        if key in zoo:
            zoo[key] = require_integer(key, zoo[key], 1)
    if "env_kwargs" in zoo and not isinstance(zoo["env_kwargs"], dict):
        raise InvalidValueError(f"env_kwargs must be a dict of the environment's arguments, got {zoo['env_kwargs']!r}")
    if "noise_std" in zoo:
        zoo["noise_std"] = require_number("noise_std", zoo["noise_std"], 0.0)
    for key in TEXT_KEYS:
        if key in zoo and not isinstance(zoo[key], str):
            example = "MlpPolicy" if key == "policy" else "normal"
            raise InvalidValueError(f"{key} must be a name such as {example}, got {zoo[key]!r}")
    check_common_arguments(kwargs)
    return zoo, kwargs


def settings_digest(values: Mapping[str, Any]) -> str:
    """Eight hex digits that identify a set of hyperparameters (by the ``repr`` of each value)."""
    text = json.dumps({key: repr(value) for key, value in sorted(values.items())}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def zoo_settings(
    algo: str, env_id: str, overrides: Mapping[str, Any] | None = None, conf_file: Path | None = None
) -> ZooSettings:
    """The zoo section of ``algo`` on ``env_id`` with ``overrides`` (``-p`` values, suite entries) on top."""
    entry, source = zoo_entry(algo, env_id, conf_file)
    raw = {**entry, **(overrides or {})}
    if overrides:
        source += " + overrides"
    zoo, kwargs = split_hyperparams(raw)
    return ZooSettings(raw, zoo, kwargs, source)


def zoo_budget(algo: str, env_id: str) -> int:
    """The zoo's ``n_timesteps`` for ``algo`` on ``env_id`` (the library default without one)."""
    return zoo_settings(algo, env_id).n_timesteps


def zoo_value(key: str, value: Any) -> Any:
    """The value of the hyperparameter ``key`` as the bridge gives it to rl_zoo3 instead of the zoo's ``eval``:
    text parsed by :func:`~sbx_lecture.hyperparams.parse_value`, which runs no code; ``lin_0.001`` stays text (the
    zoo builds the schedule), and so do names (``MlpPolicy``), except where the zoo would run them as Python."""
    if not isinstance(value, str) or value.strip().startswith("lin_"):
        return value
    try:
        parsed = parse_value(value)
    except HyperparameterError as error:
        raise HyperparameterError(f"hyperparameter {key!r}: {error}") from None
    if key == "replay_buffer_class" and isinstance(parsed, str):
        parsed = getattr(importlib.import_module("stable_baselines3"), parsed, parsed)  # HerReplayBuffer
    if key in EVALUATED_KEYS and isinstance(parsed, str):
        raise HyperparameterError(f"hyperparameter {key!r}: {value!r} is not a value; write it as dict(...)")
    return parsed

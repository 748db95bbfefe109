"""SB3's replay buffer with its minibatches gathered by torch instead of numpy.

SB3's :class:`~stable_baselines3.common.buffers.ReplayBuffer` draws a minibatch by numpy fancy indexing on its
``(time, env, ...)`` arrays and then copies each field into a new tensor. For the small networks of the lecture's
off-policy algorithms that costs a noticeable share of a gradient step on a CPU. :class:`TorchSampledReplayBuffer`
keeps SB3's storage and ``add`` untouched (saving, loading and every SB3 tool see SB3's arrays) and gathers
the rows with ``index_select`` on zero-copy tensor views of the same arrays: one copy per field instead of two.

The indices come from numpy's global generator exactly as in SB3, so a seeded run draws the same minibatches, with the
same values, as it would with SB3's buffer. With ``VecNormalize`` statistics to apply (``env`` given) or Dict
observations the minibatch is SB3's own.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch as th
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from stable_baselines3.common.vec_env import VecNormalize

#: Storage dtypes that torch indexes as numpy does (images are uint8, Discrete observations int64).
_TORCH_GATHERED_DTYPES = frozenset(
    np.dtype(name) for name in ("float16", "float32", "float64", "uint8", "int8", "int16", "int32", "int64", "bool")
)


class Rows(NamedTuple):
    """Rows of a ``(buffer_size, n_envs, ...)`` storage: their time and env indices, and the same rows as indices into
    the storage flattened to ``(buffer_size · n_envs, ...)``."""

    time: np.ndarray
    env: np.ndarray
    flat: th.Tensor


class TorchSampledReplayBuffer(ReplayBuffer):
    """:class:`~stable_baselines3.common.buffers.ReplayBuffer` whose ``sample`` gathers rows with torch.

    Same constructor, storage, ``add`` and sampling distribution as SB3's buffer; only the gathering differs.
    """

    def _rows(self, time_indices: np.ndarray, env_indices: np.ndarray) -> Rows:
        flat = time_indices * self.n_envs + env_indices if self.n_envs > 1 else time_indices
        return Rows(time_indices, env_indices, th.from_numpy(flat))

    def _following(self, rows: Rows) -> Rows:
        """The rows one time step after ``rows``, same envs (wrapping around the circular storage)."""
        return self._rows((rows.time + 1) % self.buffer_size, rows.env)

    def _next_observation_rows(self, rows: Rows) -> tuple[str, Rows]:
        """Where s′ of each row is stored: ``next_observations`` of the row, or with ``optimize_memory_usage`` the
        observation of the next row."""
        return ("observations", self._following(rows)) if self.optimize_memory_usage else ("next_observations", rows)

    def _take(self, name: str, rows: Rows) -> th.Tensor:
        """Rows of the storage array ``name`` (``"actions"``, ...) as a new tensor on the buffer's device."""
        storage: np.ndarray = getattr(self, name)
        view = self._flat_view(name, storage)
        if view is None:
            return self.to_torch(storage[rows.time, rows.env])
        return view.index_select(0, rows.flat).to(self.device)

    def _flat_view(self, name: str, storage: np.ndarray) -> th.Tensor | None:
        """A tensor sharing ``storage``'s memory, shaped ``(buffer_size · n_envs, ...)``; ``None`` where torch cannot
        view it. A view is made again when the array is replaced (loading a buffer assigns new arrays)."""
        views: dict[str, tuple[np.ndarray, th.Tensor | None]] = self.__dict__.setdefault("_flat_views", {})
        cached = views.get(name)
        if cached is not None and cached[0] is storage:
            return cached[1]
        flags = storage.flags
        viewable = storage.dtype in _TORCH_GATHERED_DTYPES and flags.c_contiguous and flags.writeable
        view = th.from_numpy(storage).flatten(0, 1) if viewable else None
        views[name] = (storage, view)
        return view

    def _episode_ends(self, rows: Rows) -> tuple[th.Tensor, th.Tensor]:
        """1 where the episode ended after the row (termination or time limit), and 1 only where it terminated: the
        bootstrap stops at terminations, not at time-limit truncations (SB3 records these as ``timeouts``)."""
        ended = self._take("dones", rows)
        return ended, ended * (1 - self._take("timeouts", rows))

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_flat_views", None)  # views share the arrays' memory: a pickled copy would not
        return state

    def _get_samples(self, batch_inds: np.ndarray, env: VecNormalize | None = None) -> ReplayBufferSamples:
        if env is not None or isinstance(self.observations, dict):
            return super()._get_samples(batch_inds, env)
        env_indices = np.random.randint(0, high=self.n_envs, size=(len(batch_inds),))  # as SB3 draws them
        rows = self._rows(batch_inds, env_indices)
        next_observations = self._take(*self._next_observation_rows(rows))
        _, terminated = self._episode_ends(rows)
        return ReplayBufferSamples(
            observations=self._take("observations", rows),
            actions=self._take("actions", rows),
            next_observations=next_observations,
            dones=terminated.reshape(-1, 1),
            rewards=self._take("rewards", rows).reshape(-1, 1),
        )

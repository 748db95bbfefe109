"""REINFORCE and ISPG load through sbx-lecture's safe path: round trips, and a payload that never runs."""

from __future__ import annotations

import base64
import json
import pathlib
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sbx_lecture.loading import UntrustedContentError, load, save

from sbx_lecture_pg.ispg import ISPG
from sbx_lecture_pg.reinforce import REINFORCE


class Payload:
    """Unpickling this creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return pathlib.Path.touch, (pathlib.Path(self.marker),)


@pytest.mark.parametrize("cls", [REINFORCE, ISPG])
def test_round_trip_through_the_safe_load(cls: Any, tmp_path: Path) -> None:
    path = tmp_path / "model.zip"
    model = cls("MlpPolicy", "CartPole-v1", seed=0)
    model.learn(64)
    save(model, path, {"algo": cls.__name__.lower()})
    obs = np.stack([model.observation_space.sample() for _ in range(16)])
    for loaded in (cls.load(path), load(path)):
        assert type(loaded) is cls
        assert loaded.num_timesteps == model.num_timesteps
        np.testing.assert_array_equal(
            loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0]
        )


def test_payload_in_a_model_never_runs(tmp_path: Path) -> None:
    path = tmp_path / "model.zip"
    REINFORCE("MlpPolicy", "CartPole-v1").save(path)
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    data = json.loads(members["data"])
    marker = tmp_path / "marker"
    data["policy_class"] = {":serialized:": base64.b64encode(pickle.dumps(Payload(marker))).decode()}
    members["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    with pytest.raises(UntrustedContentError, match="trusted=True") as exc:
        REINFORCE.load(path)
    assert "\n" not in str(exc.value)
    assert not marker.exists()

"""The README's code runs: a user who copies a snippet from README.md gets working code.

Every ```python block is executed as written, each in a fresh namespace inside a temporary folder, statement by
statement. Training budgets are cut to :data:`MAX_TIMESTEPS` (at least one rollout, or one update after
``learning_starts``), so the snippets run in seconds; what they print is not checked. A statement whose line ends
with a comment ``# SomeError: message`` is the README showing an error: it must raise an exception of that class
with that message. Any other exception fails the test. The ```toml block must parse.
"""

import ast
import re
from pathlib import Path
from typing import Any

import pytest
from stable_baselines3.common.base_class import BaseAlgorithm

README = Path(__file__).resolve().parents[1] / "README.md"
MAX_TIMESTEPS = 2048
MIN_PYTHON_BLOCKS = 3  # the SB3-style usage, the registry look-up, the plugin hook
KNOWN_LANGUAGES = {"", "bash", "python", "toml"}  # a block tagged otherwise (```py) would escape these tests

FENCE = re.compile(r"^```(\S*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
EXPECTED_ERROR = re.compile(r"#\s*([A-Z]\w*Error):\s*(.*)$")


def _blocks(language: str) -> list[tuple[int, str]]:
    """``(line number of the block's first line, code)`` for each fenced block of ``language`` in the README."""
    text = README.read_text(encoding="utf-8")
    return [
        (text[: match.start(2)].count("\n") + 1, match.group(2))
        for match in FENCE.finditer(text)
        if match.group(1) == language
    ]


PYTHON_BLOCKS = _blocks("python")


def _budget(model: BaseAlgorithm, total_timesteps: int) -> int:
    """``total_timesteps`` cut to :data:`MAX_TIMESTEPS`, but never below one rollout or one update."""
    one_rollout = getattr(model, "n_steps", 0) * model.n_envs
    first_update = getattr(model, "learning_starts", 0) + 1
    return min(total_timesteps, max(MAX_TIMESTEPS, one_rollout, first_update))


@pytest.fixture
def short_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """Scale every ``learn`` call's budget.

    ``BaseAlgorithm.learn`` is abstract and no training loop calls it; every loop (SB3's on- and off-policy ones,
    which our classes' ``learn`` reach through ``super().learn``, and sb3-contrib's) takes its bound from
    ``BaseAlgorithm._setup_learn``, so that is where the budget is cut.
    """
    setup_learn = BaseAlgorithm._setup_learn

    def scaled(self: BaseAlgorithm, total_timesteps: int, *args: Any, **kwargs: Any) -> Any:
        return setup_learn(self, _budget(self, total_timesteps), *args, **kwargs)

    monkeypatch.setattr(BaseAlgorithm, "_setup_learn", scaled)


def test_readme_has_its_blocks() -> None:
    languages = {match.group(1) for match in FENCE.finditer(README.read_text(encoding="utf-8"))}
    assert languages <= KNOWN_LANGUAGES, f"README blocks in an untested language: {languages - KNOWN_LANGUAGES}"
    assert len(PYTHON_BLOCKS) >= MIN_PYTHON_BLOCKS


@pytest.mark.parametrize(("line", "code"), PYTHON_BLOCKS, ids=[code.split("\n")[0] for _, code in PYTHON_BLOCKS])
@pytest.mark.usefixtures("short_training")
def test_python_block_runs(line: int, code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    tree = ast.parse(code)
    ast.increment_lineno(tree, line - 1)  # tracebacks point at the README's lines
    namespace: dict[str, Any] = {"__name__": "__main__"}
    for statement in tree.body:
        compiled = compile(ast.Module(body=[statement], type_ignores=[]), str(README), "exec")
        last_line = statement.end_lineno or statement.lineno
        expected = EXPECTED_ERROR.search(code.splitlines()[last_line - line])
        if expected is None:
            exec(compiled, namespace)
            continue
        error, message = expected.groups()
        try:
            exec(compiled, namespace)
        except Exception as exc:
            assert error in {cls.__name__ for cls in type(exc).__mro__}, f"README line {last_line}: {exc!r}"
            assert str(exc) == message, f"README line {last_line}"
        else:
            pytest.fail(f"README line {last_line} says it raises {error}; it ran")


def test_toml_blocks_parse() -> None:
    tomllib = pytest.importorskip("tomllib")
    blocks = _blocks("toml")
    assert blocks
    for _, code in blocks:
        assert "sbx_lecture" in tomllib.loads(code)["project"]["entry-points"]

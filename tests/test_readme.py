"""The README's examples run as written, and every relative link of the README and the docs/ pages resolves."""

import math
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def _block(after):
    """The first ```python block after the heading or phrase `after` in the README."""
    block = re.search(re.escape(after) + r".*?```python\n(.*?)```", README.read_text(), re.S)
    assert block, f"the README's example after {after!r} is missing"
    return block.group(1)


def test_the_training_loop_example_runs():
    code = _block("A training loop with pylstm's pieces")
    assert "range(100)" in code
    scope = {}
    exec(compile(code.replace("range(100)", "range(5)"), "README.md", "exec"), scope)  # noqa: S102
    # random characters: the loss starts at about log(V) and stays finite
    assert math.isfinite(scope["loss"]) and abs(scope["loss"] - math.log(96)) < 0.5
    assert scope["opt"].steps == 5


def test_the_numpy_example_runs():
    scope = {}
    exec(compile(_block("## NumPy"), "README.md", "exec"), scope)  # noqa: S102
    assert scope["out"].shape == (5, 3, 32) and scope["dx"].shape == (5, 3, 8)
    assert (scope["out"][2:, 1] == 0).all()  # the last call's lengths: row 1 ends after 2 steps


def test_the_pytorch_example_runs():
    pytest.importorskip("torch")
    scope = {}
    exec(compile(_block("## PyTorch"), "README.md", "exec"), scope)  # noqa: S102
    assert scope["out"].shape == (8, 20, 32)
    assert all(p.grad is not None for p in scope["lstm"].parameters())


def test_every_relative_link_resolves():
    pages = [README, ROOT / "benchmarks" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" not in target and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert len(pages) >= 6 and not broken, broken

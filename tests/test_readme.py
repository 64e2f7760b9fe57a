"""The README's training-loop example runs as written (with fewer steps) and trains."""

import math
import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_the_training_loop_example_runs():
    block = re.search(r"A training loop with pylstm's pieces.*?```python\n(.*?)```", README.read_text(), re.S)
    assert block, "the README's training-loop example is missing"
    code = block.group(1)
    assert "range(100)" in code
    scope = {}
    exec(compile(code.replace("range(100)", "range(5)"), "README.md", "exec"), scope)  # noqa: S102
    # random characters: the loss starts at about log(V) and stays finite
    assert math.isfinite(scope["loss"]) and abs(scope["loss"] - math.log(96)) < 0.5
    assert scope["opt"].steps == 5

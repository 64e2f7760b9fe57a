"""pylstm/_core.pyi declares exactly the names the compiled extension has."""

import ast
import pathlib

from pylstm import _core

STUB = pathlib.Path(__file__).resolve().parents[1] / "pylstm" / "_core.pyi"


def test_the_stub_names_every_binding_and_nothing_else():
    tree = ast.parse(STUB.read_text())
    declared = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    bound = {n for n in dir(_core) if not n.startswith("__")}
    assert sorted(declared - bound) == [], "declared in _core.pyi but not bound"
    assert sorted(bound - declared) == [], "bound but missing from _core.pyi"

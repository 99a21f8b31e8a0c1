"""Write docs/coverage.md: every model type, layer kind and MIL op (iOS15-iOS18), run or not, and tests.

Run from the repository root: ``python scripts/coverage.py``. ``tests/unit/test_coverage_doc.py``
fails when the file is out of step with the registry or the test cases.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "coverage.md"

#: Test modules of the model types that predate :mod:`mlupdate.models` (those declare ``MODEL_TYPES``).
CORE_TYPE_TESTS = {
    "neuralNetwork": ["test_layer_registry"],
    "neuralNetworkClassifier": ["test_predict_api"],
    "neuralNetworkRegressor": ["test_predict_api"],
    "kNearestNeighborsClassifier": ["test_knn"],
    "pipeline": ["test_pipeline"],
    "pipelineClassifier": ["test_pipeline"],
    "pipelineRegressor": ["test_pipeline"],
    "mlProgram": ["test_mlprogram", "test_mlpackage"],
}
#: Test modules of the :mod:`mlupdate.models` types: every ``tests/unit/test_models_*.py`` that declares them.
MODEL_TEST_MODULES = tuple(sorted(p.stem for p in (ROOT / "tests" / "unit").glob("test_models_*.py")))


def model_type_lines() -> list[str]:
    """The "Model types" table: every type of Model.proto's ``Type`` oneof, run (with tests) or refused (why)."""
    import importlib

    from coremltools.proto import Model_pb2

    from mlupdate.models import REFUSED
    from mlupdate.spec.validate import RUNNABLE

    kinds = [f.name for f in Model_pb2.Model.DESCRIPTOR.oneofs_by_name["Type"].fields]
    tested = {k: list(v) for k, v in CORE_TYPE_TESTS.items()}
    refs: dict[str, str] = {}
    for name in MODEL_TEST_MODULES:
        mod = importlib.import_module(f"tests.unit.{name}")
        refs[name] = getattr(mod, "REFERENCE", "")
        for kind in getattr(mod, "MODEL_TYPES", ()):
            tested.setdefault(kind, []).append(name)
    lines = [
        "## Model types",
        "",
        "Every model type of coremltools' `Model.proto`, whether `mlupdate.load` runs it, and the tests that check",
        "it (for the classic types, against scikit-learn's own predictions of the models coremltools converts).",
        "",
        f"{len(set(RUNNABLE) & set(kinds))} of {len(kinds)} types run.",
        "",
        "| model type | runs | tested in | reference |",
        "|---|---|---|---|",
    ]
    return lines + table_rows(kinds, set(RUNNABLE), tested, refs, REFUSED, "**no test**")


def table_rows(kinds: list[str], runs: set[str], tested: dict[str, list[str]], refs: dict[str, str],
               refused: dict[str, str], missing: str) -> list[str]:
    """One table row per kind: whether it runs, the test modules that check it and their references."""
    rows = []
    for kind in kinds:
        if kind in runs:
            mods = tested.get(kind, [])
            where = ", ".join(f"`tests/unit/{m}.py`" for m in mods) or missing
            ref = "; ".join(dict.fromkeys(refs[m] for m in mods if refs.get(m)))
            rows.append(f"| `{kind}` | yes | {where} | {ref} |")
        else:
            rows.append(f"| `{kind}` | no | | refused: {refused.get(kind, 'not implemented yet')} |")
    return rows


#: Test files of the MIL ops: the op tests of each family and the end-to-end program tests.
OP_TEST_FILES = (*sorted((ROOT / "tests" / "ops").glob("test_*.py")), ROOT / "tests" / "unit" / "test_mlprogram.py")
#: Ops the compiler handles itself rather than through a kernel.
COMPILER_OPS = {"const": "folded at compile time (`ops/program.py`)"}


def mil_op_lines() -> list[str]:
    """The "ML Program ops" table: every op of coremltools' iOS15-iOS18 opsets, run (kernel family, tests) or not."""
    import re

    from mlupdate.ops import OPS, REFUSED, supported_ops
    from mlupdate.spec.io import import_coremltools

    import_coremltools()
    from coremltools.converters.mil.mil.ops.registry import SSAOpRegistry

    supported = set(supported_ops())
    texts = {f: f.read_text() for f in OP_TEST_FILES if f.is_file()}
    rows = []
    for name in sorted(SSAOpRegistry.core_ops):
        versions = SSAOpRegistry.core_ops[name]
        ios = sorted({t.value + 9 for t in versions if t.value >= 6})  # AvailableTarget iOS15 = 6
        changed = [v for i, v in enumerate(ios) if i == 0 or versions[_target(versions, v)]
                   is not versions[_target(versions, ios[i - 1])]]
        defined = ", ".join(f"iOS{v}" for v in changed)
        pattern = re.compile(rf"[\"']{re.escape(name)}[\"']|mb\.{re.escape(name)}\(")
        where = ", ".join(f"`{f.relative_to(ROOT)}`" for f, t in texts.items() if pattern.search(t))
        if name in supported:
            family = sorted({k.__module__.rsplit(".", 1)[-1] for k in OPS[name].values()})
            rows.append(f"| `{name}` | {defined} | yes | {', '.join(family)} | {where or '**no test**'} |")
        elif name in COMPILER_OPS:
            rows.append(f"| `{name}` | {defined} | yes | {COMPILER_OPS[name]} | {where} |")
        else:
            rows.append(f"| `{name}` | {defined} | no | refused: {REFUSED.get(name, 'not implemented yet')} | |")
    runs = sum(1 for r in rows if "| yes |" in r)
    return [
        "## ML Program ops",
        "",
        "Every op of coremltools' MIL opsets iOS15 to iOS18 (`SSAOpRegistry.core_ops`), the releases whose opset",
        "defines or redefines it, whether mlupdate runs it (the kernel's family in `src/mlupdate/ops/`, or why not),",
        "and the test files that exercise it.",
        "",
        f"{runs} of {len(rows)} ops run.",
        "",
        "| op | defined in | runs | family | tested in |",
        "|---|---|---|---|---|",
        *rows,
    ]


def _target(versions: dict, ios: int) -> object:
    return next(t for t in versions if t.value + 9 == ios)


def render() -> str:
    """The text of docs/coverage.md, from the registry and the test cases."""
    sys.path.insert(0, str(ROOT))
    import importlib

    from coremltools.proto import NeuralNetwork_pb2
    from tests.unit import test_layer_registry as registry

    from mlupdate.layers import REFUSED, supported_layers

    kinds = [f.name for f in NeuralNetwork_pb2.NeuralNetworkLayer.DESCRIPTOR.oneofs_by_name["layer"].fields]
    supported = set(supported_layers())
    tested: dict[str, list[str]] = {}
    for module in registry._MODULES:
        mod = importlib.import_module(f"tests.unit.{module}")
        for case in getattr(mod, "CASES", []):
            for kind in case.kinds():
                tested.setdefault(kind, [])
                if module not in tested[kind]:
                    tested[kind].append(module)
    refs = {m: getattr(importlib.import_module(f"tests.unit.{m}"), "REFERENCE", "") for m in registry._MODULES}
    lines = [
        "# Coverage",
        "",
        *model_type_lines(),
        "",
        "## Layer kinds",
        "",
        "Every layer kind of coremltools' `NeuralNetwork.proto`, whether mlupdate runs it, and the tests whose",
        "reference (computed outside mlupdate) it is checked against. Generated by `python scripts/coverage.py`;",
        "`tests/unit/test_coverage_doc.py` keeps it in step with the layer registry and the test cases. Every",
        "case also runs the registry-wide invariants of `tests/unit/test_layer_registry.py` (batch independence,",
        "repeatability).",
        "",
        f"{len(supported & set(kinds))} of {len(kinds)} kinds supported.",
        "",
        "| layer kind | supported | tested in | reference |",
        "|---|---|---|---|",
        *table_rows(kinds, supported, tested, refs, REFUSED, "**no case**"),
        "",
        *mil_op_lines(),
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    DOC.write_text(render())
    print(f"wrote {DOC.relative_to(ROOT)}")

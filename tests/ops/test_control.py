"""MIL list ops (``iOS15/control_flow.py``) end to end against numpy from the op definitions."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.ops.mlprogram import run_program


def test_list_write_past_the_end_fills_the_gap_with_zeros(tmp_path: Path) -> None:
    # list_write / list_scatter past the end grow the list; the elements in between read as zeros
    # (coremltools' iOS14/test_control_flow.py::TestList::test_builder_to_backend_smoke expects [0, 0] there).
    def build(a, b):
        from coremltools.converters.mil.mil import Builder as mb

        ls = mb.make_list(init_length=2, elem_shape=(2,))
        ls = mb.list_write(ls=ls, index=0, value=a)
        ls = mb.list_write(ls=ls, index=4, value=b)
        ls = mb.list_scatter(ls=ls, indices=[2, 1], value=np.array([[-1, -2], [-4, -5]], np.float32))
        scattered = mb.list_scatter(ls=ls, indices=[7], value=np.array([[9, 8]], np.float32))
        return (mb.list_gather(ls=ls, indices=[4, 2, 3], name="gathered"),
                mb.list_gather(ls=scattered, indices=[5, 6, 7], name="tail"))

    a, b = np.array([1, 3], np.float32), np.array([2, 4], np.float32)
    out = run_program(build, {"a": a, "b": b}, tmp_path)
    np.testing.assert_array_equal(out["gathered"], np.stack([b, [-1, -2], [0, 0]]))
    np.testing.assert_array_equal(out["tail"], np.array([[0, 0], [0, 0], [9, 8]], np.float32))

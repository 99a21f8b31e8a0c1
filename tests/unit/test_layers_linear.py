"""innerProduct, batchedMatmul, embedding, embeddingND, loadConstant and loadConstantND."""

from __future__ import annotations

import numpy as np

from tests.unit.test_layers_base import Case, case_test, rand

REFERENCE = "numpy matmul / indexing written from the proto's shape rules"


def _inner_product_case() -> Case:
    w, b = rand(5, 24, seed=40), rand(5, seed=41)
    return Case("linear_inner_product_flattens_chw",
                lambda bl: bl.add_inner_product("fc", w, b, 24, 5, True, "x", "out"),
                {"x": rand(2, 3, 4, seed=42)}, lambda x: (w @ x.ravel() + b).reshape(5, 1, 1))


def _nd_case() -> Case:
    w, b = rand(4, 6, seed=43), rand(4, seed=44)
    wm, bm = rand(6, 3, seed=45), rand(3, seed=46)

    def add(bl):
        bl.add_inner_product("fc", w, b, 6, 4, True, "x", "fc")
        bl.add_batched_mat_mul("mm_w", ["x"], "mm_w", weight_matrix_rows=6, weight_matrix_columns=3, W=wm, bias=bm)
        bl.add_batched_mat_mul("mm", ["a", "c"], "mm")
        bl.add_batched_mat_mul("mm_t", ["a", "a"], "mm_t", transpose_b=True)
        bl.add_batched_mat_mul("mm_ta", ["a", "a"], "mm_ta", transpose_a=True)

    def ref(x, a, c):
        return x @ w.T + b, x @ wm + bm, a @ c, a @ np.swapaxes(a, -1, -2), np.swapaxes(a, -1, -2) @ a

    return Case("linear_nd_inner_product_and_batched_matmul", add,
                {"x": rand(1, 2, 6, seed=47), "a": rand(1, 2, 3, seed=48), "c": rand(1, 3, 4, seed=49)},
                ref, outputs=("fc", "mm_w", "mm", "mm_t", "mm_ta"), nd=True, batch=3)


def _embedding_cases() -> list[Case]:
    w, b = rand(4, 7, seed=50), rand(4, seed=51)
    const = rand(2, 1, 3, seed=52)
    const_nd = rand(1, 5, seed=53)

    def add(bl):
        bl.add_embedding_nd("emb", "ids", "emb", 7, 4, W=w, b=b)
        bl.add_load_constant_nd("cnd", "cnd", const_nd, const_nd.shape)
        bl.add_add_broadcastable("plus", ["x", "cnd"], "plus")

    ids = np.array([[[3], [0], [6]]], np.float32)
    nd = Case("linear_embedding_nd_and_constant_nd", add, {"ids": ids, "x": rand(1, 5, seed=54)},
              lambda ids, x: (w.T[ids[0, :, 0].astype(int)][None] + b, x + const_nd), outputs=("emb", "plus"),
              nd=True, batch=2)

    def add_legacy(bl):
        bl.add_embedding("emb", w, b, 7, 4, True, "ids", "emb")
        bl.add_load_constant("c", "c", const, list(const.shape))
        bl.add_elementwise("plus", ["x", "c"], "plus", "ADD")

    legacy = Case("linear_embedding_and_constant_legacy", add_legacy,
                  {"ids": np.array([5.0], np.float32), "x": rand(2, 1, 3, seed=55)},
                  lambda ids, x: ((w[:, int(ids[0])] + b).reshape(4, 1, 1), x + const), outputs=("emb", "plus"),
                  batch=1)
    return [nd, legacy]


CASES = [_inner_product_case(), _nd_case(), *_embedding_cases()]
test_cases = case_test(CASES)

"""The TensorFlow.js graph executor: op semantics against naive numpy references, batching,
rewrites, and clear errors for malformed or unsupported graphs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tfjs_builder import write_model
from vql.errors import ModelError, UnsupportedOpError
from vql.udfs.tfjs_fuse import fuse_hard_swish
from vql.udfs.tfjs_graph import load_graph
from vql.udfs.tfjs_model import TfjsModel
from vql.udfs.tfjs_ops import bilinear_taps, chunked_topk, same_padding

RNG = np.random.default_rng(7)


def naive_conv_nhwc(x, w, stride, depthwise=False):
    """TensorFlow SAME convolution, written out loop by loop (x: [H, W, C])."""
    h, wd, c = x.shape
    kh, kw = w.shape[:2]
    (pt, pb), (pl, pr) = same_padding(h, kh, stride), same_padding(wd, kw, stride)
    xp = np.pad(x, ((pt, pb), (pl, pr), (0, 0)))
    oh, ow = -(-h // stride), -(-wd // stride)
    out_c = c * w.shape[3] if depthwise else w.shape[3]
    out = np.zeros((oh, ow, out_c), np.float64)
    for i in range(oh):
        for j in range(ow):
            patch = xp[i * stride : i * stride + kh, j * stride : j * stride + kw]
            if depthwise:  # w: [kh, kw, C, M], output channel c*M + m
                out[i, j] = np.einsum("hwc,hwcm->cm", patch, w).reshape(-1)
            else:
                out[i, j] = np.einsum("hwc,hwco->o", patch, w)
    return out


def naive_resize(x, out_h, out_w):
    """TensorFlow's legacy ResizeBilinear (align_corners = half_pixel_centers = false)."""
    h, w, _ = x.shape
    out = np.zeros((out_h, out_w, x.shape[2]))
    for i in range(out_h):
        for j in range(out_w):
            sy, sx = i * h / out_h, j * w / out_w
            y0, x0 = int(np.floor(sy)), int(np.floor(sx))
            y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
            fy, fx = sy - y0, sx - x0
            top = x[y0, x0] * (1 - fx) + x[y0, x1] * fx
            bottom = x[y1, x0] * (1 - fx) + x[y1, x1] * fx
            out[i, j] = top * (1 - fy) + bottom * fy
    return out


def run(model_path, x):
    model = TfjsModel(load_graph(model_path))
    return {k: v.numpy() for k, v in model(torch.from_numpy(x)).items()}


def test_same_padding_puts_the_odd_pixel_after():
    assert same_padding(512, 3, 2) == (0, 1)
    assert same_padding(7, 3, 2) == (1, 1)
    assert same_padding(8, 5, 1) == (2, 2)
    assert same_padding(6, 1, 2) == (0, 0)


def test_conv_stride2_same_matches_tensorflow_semantics(tmp_path):
    w = RNG.normal(size=(3, 3, 3, 4)).astype(np.float32)
    b = RNG.normal(size=4).astype(np.float32)
    path = write_model(
        tmp_path,
        [("conv", "_FusedConv2D", ["input", "w", "b"],
          {"strides": [1, 2, 2, 1], "padding": "SAME", "fused_ops": ["BiasAdd", "Relu6"], "data_format": "NHWC"})],
        {"w": w, "b": b}, [1, 8, 10, 3], ["conv"],
    )
    x = RNG.normal(size=(1, 8, 10, 3)).astype(np.float32) * 3
    got = run(path, x)["conv"][0]
    want = np.clip(naive_conv_nhwc(x[0], w, 2) + b, 0, 6)
    assert got.shape == want.shape == (4, 5, 4)
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_depthwise_with_channel_multiplier(tmp_path):
    w = RNG.normal(size=(3, 3, 2, 3)).astype(np.float32)
    path = write_model(
        tmp_path,
        [("dw", "DepthwiseConv2dNative", ["input", "w"], {"strides": [1, 1, 1, 1], "padding": "SAME"})],
        {"w": w}, [1, 5, 6, 2], ["dw"],
    )
    x = RNG.normal(size=(1, 5, 6, 2)).astype(np.float32)
    np.testing.assert_allclose(run(path, x)["dw"][0], naive_conv_nhwc(x[0], w, 1, depthwise=True), atol=1e-4)


def test_resize_bilinear_legacy_sampling(tmp_path):
    path = write_model(
        tmp_path,
        [("up", "ResizeBilinear", ["input", "size"], {"align_corners": False, "half_pixel_centers": False})],
        {"size": np.array([9, 13], np.int32)}, [1, 4, 5, 2], ["up"],
    )
    x = RNG.normal(size=(1, 4, 5, 2)).astype(np.float32)
    np.testing.assert_allclose(run(path, x)["up"][0], naive_resize(x[0], 9, 13), atol=1e-5)


def test_bilinear_taps_modes():
    lo, hi, w = bilinear_taps(4, 2, align_corners=True, half_pixel=False)
    assert lo.tolist() == [0, 3] and w.tolist() == [0.0, 0.0]
    lo, hi, w = bilinear_taps(2, 4, align_corners=False, half_pixel=True)
    assert lo.tolist() == [0, 0, 0, 1] and hi.tolist() == [0, 1, 1, 1]
    assert w.tolist() == [0.75, 0.25, 0.75, 0.25]


def test_chunked_topk_equals_topk():
    x = torch.from_numpy(RNG.normal(size=(2, 300_000)).astype(np.float32))
    values, indices = chunked_topk(x, 50)
    ref_values, ref_indices = torch.topk(x, 50)
    assert torch.equal(values, ref_values) and torch.equal(indices, ref_indices)


def _hard_swish_graph(tmp_path, extra_consumer=False):
    nodes = [
        ("a", "Mul", ["sixth", "input"], {}),
        ("b", "Add", ["input", "three"], {}),
        ("r", "Relu6", ["b"], {}),
        ("y", "Mul", ["a", "r"], {}),
    ]
    outputs = ["y"]
    if extra_consumer:
        nodes.append(("other", "Sigmoid", ["r"], {}))
        outputs.append("other")
    consts = {"sixth": np.array(0.1666259765625, np.float32), "three": np.array(3.0, np.float32)}
    return write_model(tmp_path, nodes, consts, [1, 4, 4, 3], outputs)


def test_hard_swish_fusion_is_exact_and_only_where_safe(tmp_path):
    graph = load_graph(_hard_swish_graph(tmp_path / "plain"))
    fused = fuse_hard_swish(graph)
    assert [n.op for n in fused.nodes if n.op != "Const" and n.op != "Placeholder"] == ["HardSwish"]
    assert [n.op for n in graph.nodes].count("Mul") == 2, "the rewrite must not mutate its input"
    x = torch.linspace(-5, 5, 48).reshape(1, 4, 4, 3)
    want = (x * 0.1666259765625) * torch.clamp(x + 3, 0, 6)
    torch.testing.assert_close(TfjsModel(graph)(x)["y"], want)
    torch.testing.assert_close(TfjsModel(fused)(x)["y"], want, atol=1e-6, rtol=1e-6)
    shared = load_graph(_hard_swish_graph(tmp_path / "shared", extra_consumer=True))
    assert fuse_hard_swish(shared) is shared


def _batch_unsafe_graph(tmp_path):
    """Conv (batch-safe) then Reshape to [1, -1] and TopK: a graph that bakes in batch 1."""
    w = RNG.normal(size=(1, 1, 3, 2)).astype(np.float32)
    return write_model(
        tmp_path,
        [
            ("conv", "Conv2D", ["input", "w"], {"strides": [1, 1, 1, 1], "padding": "VALID"}),
            ("flat", "Reshape", ["conv", "shape"], {}),
            ("top", "TopKV2", ["flat", "k"], {"sorted": True}),
            ("idx", "Identity", ["top:1"], {}),
        ],
        {"w": w, "shape": np.array([1, -1], np.int32), "k": np.array(3, np.int32)},
        [1, 6, 6, 3], ["top", "idx"],
    )


def test_batch_of_n_equals_n_batches_of_one(tmp_path):
    model = TfjsModel(load_graph(_batch_unsafe_graph(tmp_path)))
    x = torch.from_numpy(RNG.normal(size=(5, 6, 6, 3)).astype(np.float32))
    batched = model(x)
    assert batched["top"].shape == (5, 3)
    for i in range(5):
        single = model(x[i : i + 1])
        torch.testing.assert_close(batched["top"][i], single["top"][0])
        assert torch.equal(batched["idx"][i], single["idx"][0])


def test_unsupported_op_is_named(tmp_path):
    path = write_model(tmp_path, [("n", "NonMaxSuppressionV5", ["input"], {})], {}, [1, 2, 2, 3], ["n"])
    with pytest.raises(UnsupportedOpError, match="unsupported op 'NonMaxSuppressionV5' \\(node 'n'\\)"):
        TfjsModel(load_graph(path))


def test_unsupported_fused_op_is_named(tmp_path):
    w = np.zeros((1, 1, 3, 2), np.float32)
    path = write_model(
        tmp_path,
        [("c", "_FusedConv2D", ["input", "w", "b"], {"fused_ops": ["BiasAdd", "LeakyRelu"], "padding": "SAME"})],
        {"w": w, "b": np.zeros(2, np.float32)}, [1, 2, 2, 3], ["c"],
    )
    with pytest.raises(UnsupportedOpError, match="fused op 'LeakyRelu'"):
        TfjsModel(load_graph(path))


def test_float16_weights_are_dequantized(tmp_path):
    w = RNG.normal(size=(1, 1, 3, 2)).astype(np.float32)
    path = write_model(
        tmp_path, [("c", "Conv2D", ["input", "w"], {"padding": "VALID"})], {"w": w}, [1, 2, 2, 3], ["c"], float16=True
    )
    graph = load_graph(path)
    assert graph.constants["w"].dtype == np.float32
    np.testing.assert_array_equal(graph.constants["w"], w.astype(np.float16).astype(np.float32))


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: p.unlink(), "model file not found"),
        (lambda p: p.write_text("{not json"), "bad JSON"),
        (lambda p: p.write_text(json.dumps({"hello": 1})), "no modelTopology"),
        (lambda p: (p.parent / "weights.bin").write_bytes(b"\0" * 5), "truncated"),
        (lambda p: (p.parent / "weights.bin").unlink(), "weight shard not found"),
        (lambda p: (p.parent / "weights.bin").write_bytes(b"\0" * 64), "manifest describes"),
    ],
)
def test_malformed_files_raise_clear_errors(tmp_path, damage, message):
    path = write_model(
        tmp_path, [("c", "Conv2D", ["input", "w"], {"padding": "VALID"})],
        {"w": np.ones((1, 1, 3, 2), np.float32)}, [1, 2, 2, 3], ["c"],
    )
    damage(path)
    with pytest.raises(ModelError, match=message):
        load_graph(path)


def test_missing_input_node_is_reported(tmp_path):
    path = write_model(tmp_path, [("c", "Relu", ["nowhere"], {})], {}, [1, 2, 2, 3], ["c"])
    with pytest.raises(ModelError, match="'nowhere' is not a node"):
        TfjsModel(load_graph(path))


def test_micro_batches_give_the_same_answers(tmp_path):
    path = _batch_unsafe_graph(tmp_path)
    whole = TfjsModel(load_graph(path), micro_batch=100)
    split = TfjsModel(load_graph(path), micro_batch=2)
    x = torch.from_numpy(RNG.normal(size=(5, 6, 6, 3)).astype(np.float32))
    a, b = whole(x), split(x)
    assert b["top"].shape == (5, 3)
    torch.testing.assert_close(a["top"], b["top"])
    assert torch.equal(a["idx"], b["idx"])

"""Peephole rewrites of a parsed graph, applied before compiling it.

Each rewrite is a pure function ``TfjsGraph -> TfjsGraph`` that builds new node tuples and never
mutates its input; :data:`REWRITES` lists them once, in the order they run. A rewrite only fires
where the nodes it removes have no other consumer and are no graph output, so the values the
graph computes are unchanged (up to float rounding).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import numpy as np

from vql.udfs.tfjs_graph import GraphNode, TfjsGraph


def _consumers(graph: TfjsGraph) -> Counter[str]:
    return Counter(ref.split(":")[0].lstrip("^") for n in graph.nodes for ref in n.inputs)


def _scalar(graph: TfjsGraph, name: str) -> float | None:
    value = graph.constants.get(name)
    if value is None or value.size != 1 or value.dtype.kind != "f":
        return None
    return float(value.reshape(()))


def fuse_hard_swish(graph: TfjsGraph) -> TfjsGraph:
    """Fold ``Mul(c, x) * Relu6(Add(x, 3))`` into one ``HardSwish(x, scale=c)`` node.

    MobileNetV3 exported from TensorFlow spells hard-swish as four elementwise nodes, i.e. four
    passes over the largest activations; the fused node makes two.

    Example: ``a = Mul(k, x); b = Add(x, 3); r = Relu6(b); y = Mul(a, r)`` becomes
    ``y = HardSwish(x, scale=k)`` when ``k`` is a scalar constant and ``a``, ``b``, ``r`` have no
    other consumer.
    """
    by_name = {n.name: n for n in graph.nodes}
    uses = _consumers(graph)
    protected = set(graph.outputs)
    removed: set[str] = set()
    fused: dict[str, GraphNode] = {}
    for node in graph.nodes:
        if node.op != "Mul" or len(node.inputs) != 2:
            continue
        for scaled_ref, relu_ref in (node.inputs, node.inputs[::-1]):
            scaled, relu = by_name.get(scaled_ref), by_name.get(relu_ref)
            if not (scaled and relu and scaled.op == "Mul" and relu.op == "Relu6"):
                continue
            add = by_name.get(relu.inputs[0])
            if add is None or add.op not in ("Add", "AddV2"):
                continue
            add_x = [r for r in add.inputs if _scalar(graph, r) != 3.0]
            mul_x = [r for r in scaled.inputs if _scalar(graph, r) is None]
            scale = [_scalar(graph, r) for r in scaled.inputs if _scalar(graph, r) is not None]
            if len(add_x) != 1 or len(mul_x) != 1 or len(scale) != 1 or add_x != mul_x:
                continue
            inner = (scaled.name, add.name, relu.name)
            if any(uses[n] != 1 or n in protected for n in inner):
                continue
            removed.update(inner)
            fused[node.name] = GraphNode(node.name, "HardSwish", (add_x[0],), {"scale": np.float32(scale[0])})
            break
    if not fused:
        return graph
    nodes = tuple(fused.get(n.name, n) for n in graph.nodes if n.name not in removed)
    return replace(graph, nodes=nodes)


REWRITES = (fuse_hard_swish,)


def optimize(graph: TfjsGraph) -> TfjsGraph:
    """Apply every rewrite of :data:`REWRITES` in order."""
    for rewrite in REWRITES:
        graph = rewrite(graph)
    return graph

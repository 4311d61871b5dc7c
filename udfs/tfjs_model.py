"""Executing a TensorFlow.js graph model with torch.

:class:`TfjsModel` compiles a :class:`~vql.udfs.tfjs_graph.TfjsGraph` once (every op checked
against the ``OPS`` table, weights laid out for torch, on the chosen device) into a flat list of
steps run in dependency order. Intermediate values are dropped as soon as their last consumer has
run, so memory is bounded by the widest layer, not by the graph.

Graphs converted from TensorFlow often fix the batch at 1 in their signature and bake it into
shape constants (``Reshape`` to ``[1, -1]``, gathers on a flattened batch of one). The executor
keeps the graph as written and splits it in two. The *batch-safe prefix* (convolutions, pooling,
elementwise ops, reductions and concatenations off the batch axis: every op that treats the
leading axis as independent samples) runs natively on all N samples at once, where batching pays.
The rest, from the first op that could mix samples (``Reshape``, ``GatherV2``, ``StridedSlice``...),
runs through ``torch.func.vmap`` over the graph's batch-of-one function, which is exact for any
such graph.

>>> model = TfjsModel(load_graph(path), device="cpu")          # doctest: +SKIP
>>> out = model(images)  # images: [N, 512, 512, 3] float32     # doctest: +SKIP
>>> out["tower_0/detections"].shape                              # doctest: +SKIP
torch.Size([N, 100, 6])
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from vql.errors import ModelError, UnsupportedOpError
from vql.udfs.tfjs_fuse import optimize
from vql.udfs.tfjs_graph import GraphNode, TfjsGraph
from vql.udfs.tfjs_ops import OPS, OpContext, OpFn, batch_safe


@dataclass(frozen=True, slots=True)
class Step:
    """One compiled node: its function, the value slots it reads, and the first slot it writes."""

    name: str
    fn: OpFn
    reads: tuple[int, ...]
    writes: int
    frees: tuple[int, ...]


def _split_ref(ref: str) -> tuple[str, int]:
    """``'a/b:1'`` -> ``('a/b', 1)``; ``'a/b'`` -> ``('a/b', 0)``."""
    name, _, index = ref.partition(":")
    return name, int(index) if index else 0


def _needed_nodes(graph: TfjsGraph, outputs: Sequence[str]) -> list[GraphNode]:
    """The nodes the outputs depend on, in an order where inputs come first."""
    by_name = {n.name: n for n in graph.nodes}
    order: list[GraphNode] = []
    state: dict[str, int] = {}  # 1 = visiting, 2 = done
    for out in outputs:
        stack: list[tuple[str, bool]] = [(out, False)]
        while stack:
            name, expanded = stack.pop()
            if expanded:
                state[name] = 2
                order.append(by_name[name])
                continue
            if state.get(name) == 2:
                continue
            if state.get(name) == 1:
                raise ModelError(f"{graph.path}: the graph has a cycle through {name!r}")
            if name not in by_name:
                raise ModelError(f"{graph.path}: node input {name!r} is not a node of the graph")
            state[name] = 1
            stack.append((name, True))
            for ref in reversed(by_name[name].inputs):
                if ref.startswith("^"):
                    continue
                dep = _split_ref(ref)[0]
                if state.get(dep) != 2:
                    stack.append((dep, False))
    return order


_OUTPUT_COUNT = {"TopKV2": 2}
CPU_MICRO_BATCH = 8


@functools.cache
def tune_cpu_allocator() -> bool:
    """Keep freed activation buffers in the heap instead of returning them to the OS.

    glibc serves blocks over 128 KiB-32 MiB with fresh ``mmap`` calls and unmaps them on free, so
    every frame page-faults its activations in again; at batch 8 that doubled the time per frame
    on the 2-core machines. Raising the mmap and trim thresholds (once, process-wide) lets
    glibc reuse the memory. A no-op where glibc is not the C library.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, 1 << 30)) and bool(libc.mallopt(m_trim_threshold, (1 << 31) - 1))
    except (OSError, AttributeError):
        return False


class TfjsModel:
    """A compiled graph model on one device, callable on batches of any size."""

    def __init__(
        self,
        graph: TfjsGraph,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        outputs: Sequence[str] | None = None,
        micro_batch: int | None = None,
    ) -> None:
        graph = optimize(graph)
        self.graph = graph
        self.device = torch.device(device)
        self.dtype = dtype
        self.outputs = tuple(outputs or graph.outputs)
        # On the CPU a big batch only spills the caches (one 512x512 frame's first activations
        # are 16 MiB a layer): run it as consecutive micro-batches there; GPUs take it whole.
        # Measured on 2 cores, batch 32: micro-batches of 8 ran 18 frames/s, of 1 or 2, 15.
        self.micro_batch = micro_batch or (CPU_MICRO_BATCH if self.device.type == "cpu" else None)
        unknown = [n.op for n in graph.nodes if n.op not in OPS and n.op not in ("Const", "Placeholder")]
        if unknown:
            first = next(n for n in graph.nodes if n.op == unknown[0])
            raise UnsupportedOpError(
                f"{graph.path}: unsupported op {unknown[0]!r} (node {first.name!r}); "
                f"unsupported ops in this graph: {sorted(set(unknown))}"
            )
        if self.device.type == "cpu":
            tune_cpu_allocator()
        ctx = OpContext(self.device, dtype)
        self._compile(graph, ctx)

    def _compile(self, graph: TfjsGraph, ctx: OpContext) -> None:
        nodes = _needed_nodes(graph, self.outputs)
        slot_of: dict[tuple[str, int], int] = {}
        constants: list[torch.Tensor] = []
        self._input_slots: list[int] = []
        prefix: list[tuple[GraphNode, OpFn, tuple[int, ...], int]] = []
        suffix: list[tuple[GraphNode, OpFn, tuple[int, ...], int]] = []
        per_sample: set[int] = set()  # slots whose leading axis is the batch in the prefix
        const_slots: set[int] = set()
        n_slots = 0
        for node in nodes:
            if node.op == "Const":
                slot_of[(node.name, 0)] = n_slots
                constants.append((n_slots, ctx.tensor(graph.constants[node.name])))
                const_slots.add(n_slots)
                n_slots += 1
                continue
            if node.op == "Placeholder":
                slot_of[(node.name, 0)] = n_slots
                self._input_slots.append(n_slots)
                per_sample.add(n_slots)
                n_slots += 1
                continue
            refs = [_split_ref(r) for r in node.inputs if not r.startswith("^")]
            for ref in refs:
                if ref not in slot_of:
                    raise ModelError(f"{graph.path}: node {node.name!r} reads missing output {ref[0]}:{ref[1]}")
            consts = [graph.constants.get(name) if idx == 0 else None for name, idx in refs]
            try:
                fn = OPS[node.op](node, consts, ctx)
            except (KeyError, ValueError, TypeError, IndexError) as e:
                raise ModelError(f"{graph.path}: cannot compile node {node.name!r} ({node.op}): {e}") from e
            writes = n_slots
            for k in range(_OUTPUT_COUNT.get(node.op, 1)):
                slot_of[(node.name, k)] = n_slots
                n_slots += 1
            reads = tuple(slot_of[r] for r in refs)
            if batch_safe(node, consts) and all(s in per_sample or s in const_slots for s in reads):
                per_sample.add(writes)
                prefix.append((node, fn, reads, writes))
            else:
                suffix.append((node, fn, reads, writes))
        self._output_slots = tuple(slot_of[(name, 0)] for name in self.outputs)
        self._input_names = tuple(n.name for n in nodes if n.op == "Placeholder")
        self._constants = constants
        self._n_slots = n_slots
        # Prefix steps depend on prefix steps only, so prefix-then-suffix is a valid order.
        steps = prefix + suffix
        self._n_prefix = len(prefix)
        suffix_reads = {slot for _, _, reads, _ in suffix for slot in reads}
        self._frontier = tuple(sorted(
            slot for slot in (suffix_reads | set(self._output_slots))
            if slot in per_sample and slot not in const_slots
        ))
        # Free each runtime value after its last reader (constants, outputs, frontier are kept
        # where the phase that produced them ends).
        keep = const_slots | set(self._output_slots) | set(self._frontier)
        last_reader: dict[int, int] = {}
        for i, (_, _, reads, _) in enumerate(steps):
            for slot in reads:
                last_reader[slot] = i
        frees: dict[int, list[int]] = {}
        for slot, i in last_reader.items():
            if slot not in keep:
                frees.setdefault(i, []).append(slot)
        self._steps = tuple(
            Step(node.name, fn, reads, writes, tuple(frees.get(i, ())))
            for i, (node, fn, reads, writes) in enumerate(steps)
        )

    @property
    def input_names(self) -> tuple[str, ...]:
        return self._input_names

    def signature_batch(self) -> int | None:
        """The batch size the graph's input signature fixes (``None`` when free)."""
        shape = self.graph.input_shapes.get(self._input_names[0], ())
        return shape[0] if shape and shape[0] > 0 else None

    def _run_steps(self, values: list[Any], steps: Sequence[Step]) -> None:
        for step in steps:
            try:
                result = step.fn(*[values[s] for s in step.reads])
            except RuntimeError as e:
                raise ModelError(f"{self.graph.path}: node {step.name!r} failed: {e}") from e
            if isinstance(result, tuple):
                for k, r in enumerate(result):
                    values[step.writes + k] = r
            else:
                values[step.writes] = result
            for s in step.frees:
                values[s] = None

    def _fresh_values(self) -> list[Any]:
        values: list[Any] = [None] * self._n_slots
        for slot, tensor in self._constants:
            values[slot] = tensor
        return values

    def run_graph(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Run the graph as written (inputs with the signature's own batch size)."""
        values = self._fresh_values()
        for slot, tensor in zip(self._input_slots, inputs):
            values[slot] = tensor
        self._run_steps(values, self._steps)
        return tuple(values[s] for s in self._output_slots)

    def _run_suffix(self, *frontier: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The batch-unsafe rest of the graph for one sample, from its frontier values."""
        values = self._fresh_values()
        for slot, tensor in zip(self._frontier, frontier):
            values[slot] = tensor.unsqueeze(0)
        self._run_steps(values, self._steps[self._n_prefix :])
        return tuple(values[s].squeeze(0) for s in self._output_slots)

    @torch.inference_mode()
    def __call__(self, *inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run a batch of N samples; returns each output with a leading batch dimension N."""
        if len(inputs) != len(self._input_slots):
            raise ModelError(f"the model takes {len(self._input_slots)} input(s), got {len(inputs)}")
        n = inputs[0].shape[0]
        if self.micro_batch and n > self.micro_batch:
            parts = [
                self._call(*(x[start : start + self.micro_batch] for x in inputs))
                for start in range(0, n, self.micro_batch)
            ]
            return {name: torch.cat([p[name] for p in parts]) for name in self.outputs}
        return self._call(*inputs)

    def _call(self, *inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        inputs = tuple(
            x.to(self.device, self.dtype if x.is_floating_point() else x.dtype) for x in inputs
        )
        if self.signature_batch() != 1 or inputs[0].shape[0] == 1:
            return dict(zip(self.outputs, self.run_graph(*inputs)))
        values = self._fresh_values()
        for slot, tensor in zip(self._input_slots, inputs):
            values[slot] = tensor
        self._run_steps(values, self._steps[: self._n_prefix])
        frontier = [values[s] for s in self._frontier]
        outs = torch.func.vmap(self._run_suffix)(*frontier)
        return dict(zip(self.outputs, outs))

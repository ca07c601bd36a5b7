"""Repeated blocks of a graph (the layers of a decoder, the links of a chain), so that shape
inference runs on one block instead of all of them.

A node's output types and known values follow from its op, its attributes and its inputs'
types and values, nothing else (onnx's per-node inference functions, memlint's folding). So if
blocks 1..K-1 repeat block 0 node for node (the same ops, attributes, constants, weights of the
same dtype and shape, graph inputs declared alike, the same wiring), and the tensors a block
passes to the next (the residual stream) have the types and values that block 0 received,
every block infers exactly what block 0 infers. `find_blocks` finds such a run in a parsed
graph (once per parse; no binding changes it); a load then infers the graph with blocks 1..K-1
left out (`reduced`), checks the hand-over (`hands_over`: at these dims the types block 0 hands
on are the ones it got) and gives the other blocks block 0's results (`expand`). When the
hand-over does not hold, the load infers the whole graph.

Used by memlint.frontends.onnx; graphs with subgraphs or Ifs are never folded.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import pairwise

from memlint.frontends.onnx_layout import Op, op_of

MIN_BLOCKS = 2


@dataclass(frozen=True)
class Blocks:
    """Blocks `count` repeats of the `length` nodes from `start` (topological positions): block
    k is nodes start + k * length ... start + (k + 1) * length - 1.

    carries: (block 0 input, the block-0 output at that place) pairs: block k >= 1 reads the
    second (made by block k - 1) where block 0 reads the first (made before the blocks).
    renamed: for the nodes after the blocks, each tensor of the last block they read -> block
    0's tensor at its place."""

    start: int
    length: int
    count: int
    carries: tuple[tuple[str, str], ...]
    renamed: Mapping[str, str]

    @property
    def end(self) -> int:
        return self.start + self.length * self.count

    def reduced(self, ops: list[Op]) -> list[Op]:
        """The nodes without blocks 1..count-1; the nodes after them read block 0's tensors."""
        tail = []
        for op in ops[self.end:]:
            if any(name in self.renamed for name in op.input):
                proto = type(op.proto)()
                proto.CopyFrom(op.proto)
                for i, name in enumerate(proto.input):
                    if name in self.renamed:
                        proto.input[i] = self.renamed[name]
                op = op_of(proto)
            tail.append(op)
        return ops[:self.start + self.length] + tail

    def hands_over(self, types: Mapping[str, object], constants: Mapping[str, object],
                   same_value: Callable[[object, object], bool]) -> bool:
        """Does block 0 hand on the types (and known values) it received?"""
        for received, handed in self.carries:
            if types.get(received) != types.get(handed):
                return False
            got, made = constants.get(received), constants.get(handed)
            if (got is None) != (made is None) or (got is not None and not same_value(got, made)):
                return False
        return True

    def expand(self, ops: list[Op], types: dict, constants: dict) -> None:
        """Give each tensor of blocks 1..count-1 the type (and known value) of block 0's
        tensor at its place, in place."""
        first = ops[self.start:self.start + self.length]
        for k in range(1, self.count):
            offset = self.start + k * self.length
            for j, op0 in enumerate(first):
                for name, name0 in zip(ops[offset + j].output, op0.output):
                    if not name:
                        continue
                    found = types.get(name0)
                    if found is not None:
                        types[name] = found
                    value = constants.get(name0)
                    if value is not None:
                        constants[name] = value


def find_blocks(
    ops: list[Op],
    *,
    inputs: Mapping[str, bytes],
    initializers: Mapping[str, bytes],
    outputs: Mapping[str, bytes],
    port: Callable[[str], bool],
) -> Blocks | None:
    """The longest run of repeated blocks in `ops` (topological order), or None.

    inputs: graph input -> its declared type (serialized); initializers: initializer -> its
    dtype, dims and value; outputs: graph output -> its declared type; port(name): is the graph
    input or output named so a KV-cache port (its tensors' kind follows the name)."""
    n = len(ops)
    if n < 2 * MIN_BLOCKS or any(op.subgraph or op.nested for op in ops):
        return None
    signature = [(op.op_type, op.domain, op.attr_key, len(op.input), len(op.output))
                 for op in ops]  # which inputs are omitted is compared by _wired
    length = _period(signature)
    if length is None:
        return None
    # the periodic run: the longest [a, b) with signature[i] == signature[i + length] for
    # every i in [a, b - length)
    a = b = best = 0
    run = None
    for i in range(n - length + 1):
        if i < n - length and signature[i] == signature[i + length]:
            if run is None:
                run = i
            continue
        if run is not None and i - run > best:
            a, b, best = run, i + length, i - run
        run = None
    producer: dict[str, tuple[int, int]] = {}
    for index, op in enumerate(ops):
        for slot, name in enumerate(op.output):
            if name:
                producer[name] = (index, slot)
    for start in range(a, min(a + length, b)):  # the phase: where a block starts
        count = (b - start) // length
        if count < MIN_BLOCKS:
            break
        found = _wired(ops, producer, start, length, count, inputs, initializers, outputs, port)
        if found is not None:
            return found
    return None


def _period(signature: list[tuple]) -> int | None:
    """The spacing shared by most of the signatures that recur at a constant spacing."""
    positions: dict[tuple, list[int]] = {}
    for index, sig in enumerate(signature):
        positions.setdefault(sig, []).append(index)
    votes: Counter[int] = Counter()
    for found in positions.values():
        if len(found) < MIN_BLOCKS:
            continue
        gaps = {b - a for a, b in pairwise(found)}
        if len(gaps) == 1:
            votes[gaps.pop()] += len(found)
    if not votes:
        return None
    return max(votes.items(), key=lambda item: (item[1] * item[0], -item[0]))[0]


def _wired(
    ops: list[Op],
    producer: Mapping[str, tuple[int, int]],
    start: int,
    length: int,
    count: int,
    inputs: Mapping[str, bytes],
    initializers: Mapping[str, bytes],
    outputs: Mapping[str, bytes],
    port: Callable[[str], bool],
) -> Blocks | None:
    """Blocks from `start` if every block is wired as block 0 (see Blocks), else None."""
    end = start + length * count
    carries: dict[str, str] = {}  # block 0 input -> block 0 output block k reads instead

    def alike(name: str, name0: str) -> bool:
        """Two tensors no node makes: the same graph input or initializer, or two declared
        alike (their types, or their dtype, dims and value), of the same kind of port."""
        if name == name0:
            return True
        if port(name) != port(name0) or (name in outputs) != (name0 in outputs):
            return False
        if (name in inputs or name in initializers) != (name0 in inputs or name0 in initializers):
            return False
        return inputs.get(name) == inputs.get(name0) \
            and initializers.get(name) == initializers.get(name0)

    get = producer.get
    # From the last block back: a phase that does not hold usually breaks at the end of the run
    # (its last block writes the graph's outputs), found there in one block, not after all of
    # them. The outcome is the same in any order: each block is checked against block 0.
    for k in range(count - 1, 0, -1):
        offset = start + k * length
        previous = offset - length
        for j in range(length):
            op, op0 = ops[offset + j], ops[start + j]
            for name, name0 in zip(op.input, op0.input):
                if not name or not name0:
                    if name or name0:  # omitted in one block only
                        return None
                    continue
                made, made0 = get(name), get(name0)
                if made is None:
                    if made0 is not None or not alike(name, name0):
                        return None
                    continue
                at = made[0]
                if at >= offset:  # made inside the block: at the same place in block 0
                    if made0 != (at - k * length, made[1]):
                        return None
                elif at >= previous:  # handed on by the block before
                    if made0 is not None and made0[0] >= start:  # block 0 gets it from before
                        return None
                    handed = ops[at - (k - 1) * length].output[made[1]]
                    if carries.setdefault(name0, handed) != handed:
                        return None
                elif at < start:  # made before the blocks: the same tensor
                    if name != name0:
                        return None
                else:  # from an earlier block
                    return None
            for name, name0 in zip(op.output, op0.output):
                if (not name) != (not name0):
                    return None
                if (name in outputs or name0 in outputs) and (
                        outputs.get(name) != outputs.get(name0) or port(name) != port(name0)
                        or (name in outputs) != (name0 in outputs)):
                    return None
    renamed: dict[str, str] = {}
    last = start + (count - 1) * length
    for op in ops[end:]:
        for name in op.input:
            made = producer.get(name)
            if made is None or made[0] < start or made[0] >= end:
                continue
            if made[0] < last:  # read from a block before the last: not folded
                return None
            renamed[name] = ops[made[0] - (count - 1) * length].output[made[1]]
    # the last block's tensors read after the blocks must not be graph outputs of their own
    # kind differing from block 0's (checked above per output); the graph outputs made in
    # blocks 1.. are typed by expand.
    return Blocks(start, length, count, tuple(carries.items()), renamed)


__all__ = ["Blocks", "find_blocks"]

"""Which runs the vmapped engine trains together as one program (a pack).

Every member of a pack keeps its own model, regularizer, values, seed, data and optimizer
state; the program steps them side by side, so what a member computes is what it computes
alone (tests/test_vmapped.py checks it bit for bit). What members must share is what the
program loops over: the architecture's input, the protocol (epochs, batch size, optimizer,
schedule), the stage and the execution settings.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from regbench.design.plan import RunSpec

# runs per program on an accelerator by default: the lab's grid packs into one program per
# architecture (4 cells; 16 with 4 seeds). On CPU a program is a cell's seeds, as it was.
ACCELERATOR_PACK = 16


def pack_key(spec: RunSpec) -> tuple[str, ...]:
    """What members of one pack have in common."""
    return (spec.arch, spec.stage, repr(spec.protocol), repr(spec.execution))


def packs(specs: Sequence[RunSpec], size: int | None) -> list[list[RunSpec]]:
    """Tasks of the vmapped engine: with `size` None, each cell's seeds; otherwise runs of one
    pack key in groups of at most `size`, a cell's seeds kept next to each other and the groups
    of a key as even as they can be (20 runs at 16: two of 10). Order: first appearance."""
    groups: dict[tuple[str, ...], list[RunSpec]] = {}
    for spec in specs:
        key = (spec.cell_hash,) if size is None else pack_key(spec)
        groups.setdefault(key, []).append(spec)
    tasks: list[list[RunSpec]] = []
    for members in groups.values():
        if size is None:
            tasks.append(members)
            continue
        first: dict[str, int] = {}
        for member in members:
            first.setdefault(member.cell_hash, len(first))
        members = sorted(members, key=lambda s: first[s.cell_hash])  # stable: seeds in order
        count = math.ceil(len(members) / size)
        share, extra = divmod(len(members), count)
        start = 0
        for index in range(count):
            end = start + share + (index < extra)
            tasks.append(members[start:end])
            start = end
    return tasks

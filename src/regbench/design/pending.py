"""Why a stored run of the same science is trained again: its backend, its dataset's split, or
its plugins changed since (design.plan's identity leaves none of them out, so such a run is
pending; these say why, for `plan` and the grid's start line)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from regbench.design.plan import PROVENANCE, PROVENANCE_SCHEME, RunSpec
from regbench.design.plan import digest as science_digest
from regbench.errors import RegbenchError
from regbench.plugins.datasets import UNNAMED_SPLIT

PER_OBJECT_NOTE = (
    "plugin provenance is now hashed per object, no longer per package: trained again once"
)


def provenance_parts(name: str, source: Any, digest: Any) -> list[tuple[str, str, str]]:
    """(name, 'dist version', hash) per component of a recorded `name` (a combination `a+b`
    has several), or the whole as one when the recorded values do not split alike (a row from
    before each component was listed). A '+' inside a version (`1.0+local`) stays in it: every
    component's source is 'dist version', with a space."""
    names, sources = name.split("+"), _sources(source)
    digests = str(digest or "").split("+")
    if len(names) == len(sources) == len(digests):
        return list(zip(names, sources, digests, strict=True))
    return [(name, str(source or ""), str(digest or ""))]


def _sources(recorded: Any) -> list[str]:
    """A recorded source split into its components' 'dist version's."""
    sources: list[str] = []
    for piece in str(recorded or "").split("+"):
        if sources and " " not in piece:
            sources[-1] += f"+{piece}"
        else:
            sources.append(piece)
    return sources


UNRECORDED_DATASET_NOTE = (
    "its dataset plugin's version and source were not recorded then: trained again once"
)

EARLIER_SPLIT_NOTE = (
    "trained on the dataset's earlier split, whose test images were other seeds' training and "
    "validation images: trained again once"
)


def why_pending(spec: RunSpec, stored: Mapping[str, Any] | None) -> str:
    """Why `spec` is to run although `stored`, a row of the same cell and seed trained on
    another backend or split, or with other plugin versions or sources, exists: what changed.
    Empty when nothing tells."""
    if not stored:
        return ""
    return "; ".join(
        [*_protocol_changes(spec, RunSpec.from_row(stored)), *_plugin_changes(spec, stored)]
    )


def _protocol_changes(spec: RunSpec, stored: RunSpec) -> list[str]:
    """The facts `_science` leaves out that tell `stored` from `spec`: backend, split."""
    changes = []
    old, new = stored.protocol, spec.protocol
    if old.backend != new.backend:
        changes.append(f"trained on {old.backend}; runs here train on {new.backend}")
    if old.split_scheme != new.split_scheme:
        earlier = old.split_scheme == UNNAMED_SPLIT
        changes.append(
            EARLIER_SPLIT_NOTE if earlier else f"split {old.split_scheme} -> {new.split_scheme}"
        )
    return changes


def _plugin_changes(spec: RunSpec, stored: Mapping[str, Any]) -> list[str]:
    """Which plugin changed between `stored` and `spec` (the recorded versions and sources)."""
    if not any(stored.get(key) for key in PROVENANCE):
        version = stored.get("regbench_version") or "an earlier regbench"
        return [f"trained by {version} before plugin provenance was recorded"]
    rehashed = bool(spec.provenance) and stored.get("provenance_scheme") != PROVENANCE_SCHEME
    changes = [PER_OBJECT_NOTE] if rehashed else []
    if spec.provenance.get("dataset_source") and not stored.get("dataset_source"):
        changes.append(UNRECORDED_DATASET_NOTE)
    for key in PROVENANCE:
        old, new = stored.get(key), spec.provenance.get(key)
        if rehashed and key.endswith("_hash"):  # hashes of the two schemes never compare
            continue
        if rehashed and new is not None:  # the earlier scheme listed a distribution once
            new = "+".join(dict.fromkeys(_sources(new)))
        if old != new and isinstance(old, str) and old:
            changes.append(f"{key.replace('_', ' ')} {old} -> {new}")
    return changes


def stale_reasons(specs: Sequence[RunSpec], rows: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """config_hash -> why that spec is pending although the store holds a row of the same
    science (arch, reg, values, seed, stage, protocol) from another backend or split, or other
    plugin versions or sources; of several such rows, the one trained last is compared."""
    earlier: dict[str, Mapping[str, Any]] = {}
    for row in sorted(rows, key=lambda row: str(row.get("started_at") or "")):
        try:
            earlier[science_digest(_science(RunSpec.from_row(row)))] = row
        except (KeyError, TypeError, ValueError, RegbenchError):  # a row too old to say
            continue
    reasons = {}
    for spec in specs:
        found = earlier.get(science_digest(_science(spec)))
        if found is not None and found.get("config_hash") != spec.config_hash:
            reasons[spec.config_hash] = why_pending(spec, found) or "its plugins changed"
    return reasons


def _science(spec: RunSpec) -> dict[str, Any]:
    """The identity without what `why_pending` can name: provenance, backend, split."""
    science = {k: v for k, v in spec.identity().items() if k != "provenance"}
    unnamed = ("backend", "split_scheme")
    science["protocol"] = {k: v for k, v in science["protocol"].items() if k not in unnamed}
    return science

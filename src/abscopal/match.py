"""Lesion identity across timepoints: registered centroid distance, overlap, Hungarian assignment.

Follow-up lesions are brought into the baseline's coordinates by a `Registration`; the cost of a
pair is the distance between centroids (mm), reduced by their overlap so that overlapping
lesions win. `scipy.optimize.linear_sum_assignment` picks one partner each; pairs farther than
`max_distance_mm` without any overlap are not matches. Left-overs become:

- split: an unmatched follow-up lesion overlapping (or within `max_distance_mm` of) a matched
  baseline lesion — a part of it;
- merged: a follow-up lesion that overlaps an unmatched baseline lesion as well as its own partner;
- new, disappeared: no partner and no relation.

An override (`overrides`: follow-up lesion id -> baseline lesion id, or "new") wins over the
assignment: a manifest entry, or an identity the SEG states (a shared TrackingUID); `rules` names
where each came from for the evidence (default "manifest override"). Every result carries its
evidence (distance, overlap, rule).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

import numpy as np
from scipy.optimize import linear_sum_assignment

from abscopal.register import Registration

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from numpy.typing import NDArray

    from abscopal.model import LesionMask

MAX_DISTANCE_MM = 20.0
NEW = "new"  # an override value: the follow-up lesion is new whatever the geometry says


class MatchKind(StrEnum):
    """How a lesion relates to the other timepoint."""

    MATCHED = "matched"
    NEW = "new"
    DISAPPEARED = "disappeared"
    SPLIT = "split"
    MERGED = "merged"


@dataclass(frozen=True, slots=True, kw_only=True)
class LesionLink:
    """One result: which baseline and follow-up lesions, how they relate, and the evidence."""

    kind: MatchKind
    lesion_id: str  # the stable id: the baseline's, or the follow-up's own for a new lesion
    baseline_ids: tuple[str, ...]
    follow_up_ids: tuple[str, ...]
    distance_mm: float | None
    overlap: float | None  # shared voxels / voxels of the smaller lesion, after registration
    evidence: str


def _centroid(mask: LesionMask) -> NDArray[np.float64]:
    centre: NDArray[np.float64] = mask.points_lps().mean(axis=0)
    return centre


def _overlap(base: LesionMask, follow_points: NDArray[np.float64]) -> float:
    """Share of the smaller lesion covered by the other (follow-up voxels on the baseline grid)."""
    index = np.rint(base.grid.lps_to_index(follow_points)).astype(int)
    inside = np.all((index >= 0) & (index < np.asarray(base.grid.shape)), axis=1)
    hits = np.unique(index[inside][base.mask[tuple(index[inside].T)]], axis=0)
    smaller = min(base.voxel_count, len(follow_points))
    return float(len(hits)) / smaller if smaller else 0.0


def match_lesions(
    baseline: Sequence[LesionMask],
    follow_up: Sequence[LesionMask],
    *,
    registration: Registration | None = None,
    max_distance_mm: float = MAX_DISTANCE_MM,
    overrides: Mapping[str, str] | None = None,
    rules: Mapping[str, str] | None = None,
) -> list[LesionLink]:
    """Link every baseline and follow-up lesion (see the module docstring)."""
    reg = registration or Registration.identity()
    overrides = dict(overrides or {})
    rules = dict(rules or {})
    base = [m for m in baseline if m.voxel_count]
    follow = [m for m in follow_up if m.voxel_count]
    base_c = np.array([_centroid(m) for m in base]).reshape(-1, 3)
    points = [reg.to_baseline(m.points_lps()) for m in follow]
    follow_c = np.array([p.mean(axis=0) for p in points]).reshape(-1, 3)
    distance = np.linalg.norm(base_c[:, None, :] - follow_c[None, :, :], axis=-1)
    overlap = np.array([[_overlap(b, p) for p in points] for b in base]).reshape(distance.shape)
    allowed = (distance <= max_distance_mm) | (overlap > 0)
    cost = np.where(allowed, distance - max_distance_mm * overlap, 1e9)
    pairs: dict[int, int] = {}  # follow-up index -> baseline index
    forced = {j for j, m in enumerate(follow) if m.lesion_id in overrides}
    base_ids = [m.lesion_id for m in base]
    for j in forced:
        target = overrides[follow[j].lesion_id]
        if target != NEW and target in base_ids:
            pairs[j] = base_ids.index(target)
    free_b = [i for i in range(len(base)) if i not in pairs.values()]
    free_f = [j for j in range(len(follow)) if j not in forced]
    if free_b and free_f:
        rows, cols = linear_sum_assignment(cost[np.ix_(free_b, free_f)])
        for r, c in zip(rows, cols, strict=True):
            i, j = free_b[r], free_f[c]
            if allowed[i, j]:
                pairs[j] = i
    links: list[LesionLink] = []
    for j, i in sorted(pairs.items(), key=lambda kv: kv[1]):
        own = follow[j].lesion_id
        rule = rules.get(own, "manifest override") if j in forced else "Hungarian assignment"
        links.append(
            LesionLink(
                kind=MatchKind.MATCHED,
                lesion_id=base[i].lesion_id,
                baseline_ids=(base[i].lesion_id,),
                follow_up_ids=(own,),
                distance_mm=float(distance[i, j]),
                overlap=float(overlap[i, j]),
                evidence=f"{rule}: registered centroids {distance[i, j]:.1f} mm apart, "
                f"overlap {overlap[i, j]:.0%}",
            )
        )
    matched_b = set(pairs.values())
    for j in range(len(follow)):
        if j in pairs:
            continue
        links.append(
            _unmatched_follow_up(
                j,
                follow=follow,
                base=base,
                pairs=pairs,
                distance=distance,
                overlap=overlap,
                max_distance_mm=max_distance_mm,
                forced={j: rules.get(follow[j].lesion_id, "manifest override") for j in forced},
            )
        )
    for i in range(len(base)):
        if i in matched_b:
            continue
        links.append(
            _unmatched_baseline(
                i, follow=follow, base=base, pairs=pairs, distance=distance, overlap=overlap
            )
        )
    return links


def _unmatched_follow_up(
    j: int,
    *,
    follow: Sequence[LesionMask],
    base: Sequence[LesionMask],
    pairs: Mapping[int, int],
    distance: NDArray[np.float64],
    overlap: NDArray[np.float64],
    max_distance_mm: float,
    forced: Mapping[int, str],  # follow-up index -> the rule that forced it
) -> LesionLink:
    own = follow[j].lesion_id
    near = [i for i in pairs.values() if overlap[i, j] > 0 or distance[i, j] <= max_distance_mm]
    if near and j not in forced:
        i = min(near, key=lambda n: distance[n, j] - max_distance_mm * overlap[n, j])
        return LesionLink(
            kind=MatchKind.SPLIT,
            lesion_id=base[i].lesion_id,
            baseline_ids=(base[i].lesion_id,),
            follow_up_ids=(own,),
            distance_mm=float(distance[i, j]),
            overlap=float(overlap[i, j]),
            evidence=f"a second follow-up lesion {distance[i, j]:.1f} mm from "
            f"{base[i].lesion_id} (overlap {overlap[i, j]:.0%}), which already has a partner",
        )
    reason = forced.get(j, f"no baseline lesion within {max_distance_mm:g} mm or overlapping")
    nearest = float(distance[:, j].min()) if distance.shape[0] else None
    return LesionLink(
        kind=MatchKind.NEW,
        lesion_id=own,
        baseline_ids=(),
        follow_up_ids=(own,),
        distance_mm=nearest,
        overlap=None,
        evidence=reason,
    )


def _unmatched_baseline(
    i: int,
    *,
    follow: Sequence[LesionMask],
    base: Sequence[LesionMask],
    pairs: Mapping[int, int],
    distance: NDArray[np.float64],
    overlap: NDArray[np.float64],
) -> LesionLink:
    own = base[i].lesion_id
    into = [j for j in pairs if overlap[i, j] > 0]
    if into:
        j = max(into, key=lambda n: overlap[i, n])
        partner = base[pairs[j]].lesion_id
        return LesionLink(
            kind=MatchKind.MERGED,
            lesion_id=own,
            baseline_ids=(own, partner),
            follow_up_ids=(follow[j].lesion_id,),
            distance_mm=float(distance[i, j]),
            overlap=float(overlap[i, j]),
            evidence=f"follow-up lesion {follow[j].lesion_id} overlaps {own} "
            f"({overlap[i, j]:.0%}) and its partner {partner}",
        )
    nearest = float(distance[i].min()) if distance.shape[1] else None
    return LesionLink(
        kind=MatchKind.DISAPPEARED,
        lesion_id=own,
        baseline_ids=(own,),
        follow_up_ids=(),
        distance_mm=nearest,
        overlap=None,
        evidence="no follow-up lesion left to partner it",
    )

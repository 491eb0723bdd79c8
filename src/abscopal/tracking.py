"""Lesion identity across a patient's timepoints: the SEG's own ids where it states them, geometry where not.

Timepoints are taken in date order; the first one's segments are lesions under their own names.
A later segment keeps the identity its SEG states when

- its TrackingUID is one an earlier timepoint gave a lesion, or
- its name (TrackingID, else SegmentLabel) is a lesion id seen earlier, or
- its SEG shares a TrackingUID with an earlier timepoint (so tracks consistently) and gives it
  a TrackingUID never seen: a new lesion.

The others are matched by geometry (`abscopal.match`): the CT is registered rigidly to the first
timepoint's CT (`abscopal.register`, only then and once per timepoint: it costs seconds), every
lesion known so far stands there by its latest non-empty mask, and the Hungarian assignment names
each segment. A matched segment takes the lesion's id; a new one (or a split-off part) keeps its
own name, made unique with its date if taken; a lesion without a partner is absent at that date.
A manifest `matches` entry (`MatchOverride`) wins over both. When geometry contradicts an
identity the SEG states (no overlap and farther than `MAX_DISTANCE_MM`), the SEG is trusted and a
warning is logged; this check runs only where the timepoint is registered anyway.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING

import numpy as np

from abscopal.errors import IngestError
from abscopal.match import MAX_DISTANCE_MM, NEW, LesionLink, MatchKind, match_lesions
from abscopal.register import Registration, register

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from datetime import date

    from abscopal.geometry import Grid
    from abscopal.model import LesionMask, Volume

logger = logging.getLogger(__name__)


class IdentityRule(StrEnum):
    """Why a segment carries the lesion id it has."""

    FIRST = "first timepoint"
    TRACKING_UID = "TrackingUID"
    NAME = "TrackingID or SegmentLabel"
    NEW_TRACKING_UID = "new TrackingUID"
    MANIFEST = "manifest"
    GEOMETRY = "geometry"


@dataclass(frozen=True, slots=True, kw_only=True)
class Segment:
    """What a SEG says about one segment's identity."""

    name: str  # TrackingID, else SegmentLabel: the lesion_id its mask was read with
    label: str  # SegmentLabel
    tracking_uid: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Scan:
    """One timepoint as read: its CT and its masks and segments by segment name."""

    date: date
    ct: Volume
    masks: Mapping[str, LesionMask]
    segments: Mapping[str, Segment] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class MatchOverride:
    """A manifest `matches` entry: `segment` at `date` is `lesion_id` (or "new")."""

    date: date
    segment: str  # a SegmentLabel or TrackingID of the SEG at that date
    lesion_id: str  # a lesion id seen before that date, or NEW
    where: str  # "manifest.yaml line 12: matches.0", for errors


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class TrackedTimepoint:
    """How the segments of one timepoint got their lesion ids, with the evidence."""

    date: date
    lesion_ids: Mapping[str, str]  # segment name -> lesion id
    rules: Mapping[str, IdentityRule]  # segment name -> why
    links: tuple[LesionLink, ...] = ()  # the geometric match, where the timepoint needed one
    registration: Registration | None = None  # this CT -> the first timepoint's CT, if computed

    def renamed(self, masks: Mapping[str, LesionMask]) -> dict[str, LesionMask]:
        """`masks` (by segment name) under their lesion ids."""
        return {
            self.lesion_ids[name]: replace(mask, lesion_id=self.lesion_ids[name])
            for name, mask in masks.items()
        }


@dataclass(slots=True)
class _Known:
    """The lesions seen so far, and each one's latest non-empty mask (timepoint index, mask)."""

    ids: set[str] = field(default_factory=set)
    uids: dict[str, str] = field(default_factory=dict)  # TrackingUID -> lesion id
    latest: dict[str, tuple[int, LesionMask]] = field(default_factory=dict)


def track_lesions(
    scans: Sequence[Scan], *, overrides: Sequence[MatchOverride] = ()
) -> tuple[TrackedTimepoint, ...]:
    """Give every segment of every scan (date order) its lesion id; see the module docstring."""
    by_scan = _overrides_by_scan(scans, overrides)
    known = _Known()
    registrations: dict[int, Registration] = {}
    out: list[TrackedTimepoint] = []
    for n, scan in enumerate(scans):
        record = _track_one(n, scans, known, registrations, by_scan.get(n, {}))
        _remember(known, n, scan, record)
        out.append(record)
    return tuple(out)


def _track_one(
    n: int,
    scans: Sequence[Scan],
    known: _Known,
    registrations: dict[int, Registration],
    overrides: Mapping[str, MatchOverride],
) -> TrackedTimepoint:
    scan = scans[n]
    ids, rules = _stated(scan, known, overrides, first=n == 0)
    untracked = [name for name in scan.masks if name not in rules]
    links: tuple[LesionLink, ...] = ()
    if untracked and known.latest:
        for k in {n, *(k for k, _ in known.latest.values())}:
            _registration(k, scans, registrations)
        links = _geometric(
            scan, registrations[n], ids=ids, rules=rules, known=known, at=registrations
        )
        _assign_matched(links, untracked, ids, rules)
    for name in scan.masks:
        if name not in ids:
            ids[name] = _fresh(name, scan.date, known.ids, ids.values())
            rules.setdefault(name, IdentityRule.FIRST if n == 0 else IdentityRule.GEOMETRY)
    return TrackedTimepoint(
        date=scan.date,
        lesion_ids=ids,
        rules=rules,
        links=_named(links, ids),
        registration=registrations[n] if links else None,
    )


def _overrides_by_scan(
    scans: Sequence[Scan], overrides: Sequence[MatchOverride]
) -> dict[int, dict[str, MatchOverride]]:
    """Overrides by scan index and segment name; an unknown date or segment is an IngestError."""
    out: dict[int, dict[str, MatchOverride]] = {}
    dates = [s.date for s in scans]
    for o in overrides:
        if o.date not in dates:
            msg = (
                f"{o.where}.date: no CT timepoint on {o.date}; the timepoints are "
                f"{[d.isoformat() for d in dates]}: use one of them"
            )
            raise IngestError(msg)
        n = dates.index(o.date)
        segments = scans[n].segments
        names = [s for s, seg in segments.items() if o.segment in {s, seg.label}]
        if not names:
            found = sorted({*segments, *(seg.label for seg in segments.values())})
            msg = (
                f"{o.where}.segment: the SEG of {o.date} has no segment {o.segment!r} "
                f"(SegmentLabel or TrackingID); found {found}: name one of them"
            )
            raise IngestError(msg)
        out.setdefault(n, {})[names[0]] = o
    return out


def _stated(
    scan: Scan, known: _Known, overrides: Mapping[str, MatchOverride], *, first: bool
) -> tuple[dict[str, str], dict[str, IdentityRule]]:
    """The ids the manifest or the SEG itself states (segment name -> lesion id), and why."""
    ids: dict[str, str] = {}
    rules: dict[str, IdentityRule] = {}
    for name, o in overrides.items():
        if o.lesion_id != NEW and o.lesion_id not in known.ids:
            msg = (
                f"{o.where}.lesion_id: {o.lesion_id!r} is no lesion seen before {o.date}; "
                f"known: {sorted(known.ids)}; name one of them or write 'new'"
            )
            raise IngestError(msg)
        if o.lesion_id in ids.values():
            msg = f"{o.where}.lesion_id: {o.lesion_id!r} is matched twice on {o.date}; keep one"
            raise IngestError(msg)
        if o.lesion_id != NEW:
            ids[name] = o.lesion_id
        rules[name] = IdentityRule.MANIFEST
    if first:
        return ids, rules
    consistent = any(s.tracking_uid in known.uids for s in scan.segments.values())
    for name in scan.masks:
        if name in rules:
            continue
        lesion, rule = _stated_one(scan.segments.get(name), name, known, consistent=consistent)
        if rule is not None and (lesion is None or lesion not in ids.values()):
            rules[name] = rule
            if lesion is not None:
                ids[name] = lesion
    return ids, rules


def _stated_one(
    segment: Segment | None, name: str, known: _Known, *, consistent: bool
) -> tuple[str | None, IdentityRule | None]:
    uid = segment.tracking_uid if segment else None
    if uid is not None and uid in known.uids:
        return known.uids[uid], IdentityRule.TRACKING_UID
    if name in known.ids:
        return name, IdentityRule.NAME
    if uid is not None and consistent:
        return None, IdentityRule.NEW_TRACKING_UID  # the SEG tracks, and says: new
    return None, None


def _registration(n: int, scans: Sequence[Scan], cache: dict[int, Registration]) -> Registration:
    """Scan `n`'s CT registered to the first scan's (identity on the same frame), computed once."""
    if n not in cache:
        base, follow = scans[0].ct, scans[n].ct
        same = base.grid.frame_of_reference_uid == follow.grid.frame_of_reference_uid
        if n == 0 or (same and base.grid.frame_of_reference_uid is not None):
            cache[n] = Registration.identity()
        else:
            started = time.perf_counter()
            cache[n] = register(base, follow)
            logger.info(
                "CT of timepoint %d registered to timepoint 0 in %.1f s (metric %.4g)",
                n,
                time.perf_counter() - started,
                cache[n].metric,
            )
    return cache[n]


def _geometric(
    scan: Scan,
    reg: Registration,
    *,
    ids: Mapping[str, str],
    rules: Mapping[str, IdentityRule],
    known: _Known,
    at: Mapping[int, Registration],
) -> tuple[LesionLink, ...]:
    """Match the scan's masks to the known lesions (moved by `at`), the stated ids held fixed."""
    baseline = [
        _moved(replace(mask, lesion_id=lesion), at[k])
        for lesion, (k, mask) in sorted(known.latest.items())
    ]
    forced = {name: ids.get(name, NEW) for name in rules}
    links = match_lesions(
        baseline,
        [replace(mask, lesion_id=name) for name, mask in scan.masks.items()],
        registration=reg,
        overrides=forced,
        rules={name: rule.value for name, rule in rules.items()},
    )
    _warn_contradictions(links, rules, scan.date)
    return tuple(links)


def _warn_contradictions(
    links: Sequence[LesionLink],
    rules: Mapping[str, IdentityRule],
    when: date,
) -> None:
    stated = {IdentityRule.TRACKING_UID, IdentityRule.NAME}
    for link in links:
        if link.kind is not MatchKind.MATCHED or rules.get(link.follow_up_ids[0]) not in stated:
            continue
        if (link.overlap or 0.0) == 0.0 and (link.distance_mm or 0.0) > MAX_DISTANCE_MM:
            logger.warning(
                "lesion %s on %s: the SEG's %s names it, but after registration it lies %.0f mm "
                "from that lesion without overlap; the SEG's id is kept (a manifest 'matches' "
                "entry overrides it)",
                link.lesion_id,
                when.isoformat(),
                rules[link.follow_up_ids[0]].value,
                link.distance_mm,
            )


def _assign_matched(
    links: Sequence[LesionLink],
    untracked: Sequence[str],
    ids: dict[str, str],
    rules: dict[str, IdentityRule],
) -> None:
    for link in links:
        if link.kind is not MatchKind.MATCHED:
            continue
        name = link.follow_up_ids[0]
        if name in untracked:
            ids[name] = link.lesion_id
            rules[name] = IdentityRule.GEOMETRY


def _fresh(name: str, when: date, known: set[str], taken: Iterable[str]) -> str:
    """`name` for a new lesion, or `name (date)` when a lesion already has it."""
    return name if name not in known | set(taken) else f"{name} ({when.isoformat()})"


def _named(links: Sequence[LesionLink], ids: Mapping[str, str]) -> tuple[LesionLink, ...]:
    """New lesions' links under the id they were given."""
    return tuple(
        replace(link, lesion_id=ids[link.follow_up_ids[0]]) if link.kind is MatchKind.NEW else link
        for link in links
    )


def _remember(known: _Known, n: int, scan: Scan, record: TrackedTimepoint) -> None:
    for name, mask in scan.masks.items():
        lesion = record.lesion_ids[name]
        known.ids.add(lesion)
        segment = scan.segments.get(name)
        if segment is not None and segment.tracking_uid is not None:
            known.uids.setdefault(segment.tracking_uid, lesion)
        if mask.voxel_count:
            known.latest[lesion] = (n, replace(mask, lesion_id=lesion))


def _moved(mask: LesionMask, reg: Registration) -> LesionMask:
    """`mask` in the first timepoint's coordinates: its grid moved by the (rigid) registration."""
    if reg.kind == "identity":
        return mask
    return replace(mask, grid=_moved_grid(mask.grid, reg))


def _moved_grid(grid: Grid, reg: Registration) -> Grid:
    """`grid` carried by `reg` (its rotation part: a grid's axes stay orthonormal)."""
    u, _, vt = np.linalg.svd(reg.matrix)
    rotation = u @ vt
    origin = reg.to_baseline(np.asarray(grid.origin_mm))
    axes = np.asarray(grid.axes, dtype=float) @ rotation.T
    return replace(
        grid,
        origin_mm=(float(origin[0]), float(origin[1]), float(origin[2])),
        axes=tuple((float(a[0]), float(a[1]), float(a[2])) for a in axes),  # type: ignore[arg-type]
    )

"""Lesion tracking on a synthetic patient after a deliberate rigid motion between timepoints."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from abscopal.io.dicom import index_folder, load_series
from abscopal.io.seg import read_seg
from abscopal.match import MatchKind, match_lesions
from abscopal.model import LesionMask
from abscopal.register import register
from test_register import moved_grid, one_patient, rigid_motion  # noqa: F401  (fixture)


@pytest.fixture
def patient(one_patient: Path) -> Path:  # noqa: F811  (the imported fixture)
    return one_patient


def _timepoints(folder: Path):  # type: ignore[no-untyped-def]
    cts = sorted(
        (s for s in index_folder(folder / "ct") if s.modality == "CT"), key=lambda s: s.study_date
    )
    segs = sorted((folder / "seg").glob("*.dcm"))
    return cts, segs


def test_tracking_recovers_identities_after_rigid_motion(patient: Path) -> None:
    """Follow-up moved by 4° and (7, -5, 10) mm; its lesions renamed; one removed (vanished), one
    added far from any other (new). Registration + matching give back the generator's ids."""
    cts, segs = _timepoints(patient)
    base_ct = load_series(cts[1])
    base = list(read_seg(segs[1], reference=base_ct.grid).masks)
    follow_ct = load_series(cts[2])
    follow = list(read_seg(segs[2], reference=follow_ct.grid).masks)
    rotation, shift = rigid_motion(4.0, (7.0, -5.0, 10.0))
    moved_ct = replace(follow_ct, grid=moved_grid(follow_ct.grid, rotation, shift))
    vanished = follow.pop()
    renamed = {f"F{n}": m.lesion_id for n, m in enumerate(follow)}
    moved = [
        LesionMask(lesion_id=f"F{n}", mask=m.mask, grid=moved_grid(m.grid, rotation, shift))
        for n, m in enumerate(follow)
    ]
    far = np.zeros((3, 3, 3), dtype=bool)
    far[1, 1, 1] = True
    corner = moved_ct.grid.crop((1, 1, 1), (4, 4, 4))  # a voxel at the edge of the field of view
    moved.append(LesionMask(lesion_id="NEW1", mask=far, grid=corner))

    links = match_lesions(base, moved, registration=register(base_ct, moved_ct))
    by_kind = {kind: [link for link in links if link.kind is kind] for kind in MatchKind}
    assert {link.follow_up_ids[0]: link.lesion_id for link in by_kind[MatchKind.MATCHED]} == renamed
    assert [link.lesion_id for link in by_kind[MatchKind.DISAPPEARED]] == [vanished.lesion_id]
    assert [link.lesion_id for link in by_kind[MatchKind.NEW]] == ["NEW1"]
    assert all(link.overlap and link.overlap > 0.5 for link in by_kind[MatchKind.MATCHED])
    assert all("mm apart" in link.evidence for link in by_kind[MatchKind.MATCHED])

    assert all(
        link.distance_mm is not None and link.distance_mm < 3.0
        for link in by_kind[MatchKind.MATCHED]
    )
    unregistered = match_lesions(base, moved)  # the 13 mm motion stays in the distances
    assert all(
        link.distance_mm is not None and link.distance_mm > 8.0
        for link in unregistered
        if link.kind is MatchKind.MATCHED
    )


def _box(
    grid_mask: LesionMask, start: tuple[int, int, int], stop: tuple[int, int, int], name: str
) -> LesionMask:
    mask = np.zeros_like(grid_mask.mask)
    mask[start[0] : stop[0], start[1] : stop[1], start[2] : stop[2]] = True
    return LesionMask(lesion_id=name, mask=mask, grid=grid_mask.grid)


@pytest.fixture
def canvas() -> LesionMask:
    from abscopal.geometry import AXIAL, Grid

    grid = Grid(
        origin_mm=(0, 0, 0),
        spacing_mm=(2.0, 1.0, 1.0),
        axes=AXIAL,
        shape=(10, 60, 60),
        frame_of_reference_uid="1",
    )
    return LesionMask(lesion_id="canvas", mask=np.zeros(grid.shape, dtype=bool), grid=grid)


def test_split_and_merge_with_evidence(canvas: LesionMask) -> None:
    big = _box(canvas, (2, 10, 10), (6, 20, 40), "B1")
    halves = [
        _box(canvas, (2, 10, 10), (6, 20, 22), "F1"),
        _box(canvas, (2, 10, 28), (6, 20, 40), "F2"),
    ]
    kinds = sorted(link.kind.value for link in match_lesions([big], halves))
    assert kinds == ["matched", "split"]
    two = [
        _box(canvas, (2, 10, 10), (6, 20, 22), "B1"),
        _box(canvas, (2, 10, 28), (6, 20, 40), "B2"),
    ]
    merged = match_lesions(two, [_box(canvas, (2, 10, 10), (6, 20, 40), "F1")])
    assert sorted(link.kind.value for link in merged) == ["matched", "merged"]
    assert "overlaps" in next(link for link in merged if link.kind is MatchKind.MERGED).evidence


def test_manifest_override_wins(canvas: LesionMask) -> None:
    a = _box(canvas, (2, 10, 10), (6, 20, 20), "B1")
    b = _box(canvas, (2, 40, 40), (6, 50, 50), "B2")
    f = _box(canvas, (2, 10, 10), (6, 20, 20), "F1")
    links = match_lesions([a, b], [f], overrides={"F1": "B2"})
    matched = next(link for link in links if link.kind is MatchKind.MATCHED)
    assert (matched.lesion_id, "manifest override" in matched.evidence) == ("B2", True)
    assert match_lesions([a], [f], overrides={"F1": "new"})[0].kind is MatchKind.NEW


def test_forced_pairs_name_the_rule_that_forced_them(canvas: LesionMask) -> None:
    """Identities a SEG states (a TrackingUID) are passed as overrides; evidence says which."""
    a = _box(canvas, (2, 10, 10), (6, 20, 20), "B1")
    f = _box(canvas, (2, 10, 12), (6, 20, 22), "F1")
    (link,) = match_lesions([a], [f], overrides={"F1": "B1"}, rules={"F1": "TrackingUID"})
    assert link.evidence == "TrackingUID: registered centroids 2.0 mm apart, overlap 80%"
    links = match_lesions([a], [f], overrides={"F1": "new"}, rules={"F1": "new TrackingUID"})
    assert [(x.kind, x.evidence) for x in links] == [
        (MatchKind.NEW, "new TrackingUID"),
        (MatchKind.DISAPPEARED, "no follow-up lesion left to partner it"),
    ]

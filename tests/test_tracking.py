"""Lesion tracking in `load_patient`: SEGs that do not track, a patient who moved, manifest matches.

One small patient of scenario f (a new lesion N1 from t0 + 91 d) is written untracked (follow-up
segments labelled per date, in a shuffled order, no TrackingUID shared) and moved rigidly
between timepoints (4° about S and 10 mm, `Motion`); it is loaded once for the module (four
registrations, about 10–20 s).
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from abscopal.errors import IngestError
from abscopal.match import MatchKind
from abscopal.outputs import result_dict
from abscopal.pipeline import PatientInputs, analyze, load_patient
from abscopal.synth import synthesize_patient
from abscopal.synth.patient import Motion
from abscopal.tracking import IdentityRule, Scan, Segment, track_lesions


@pytest.fixture(scope="module")
def moved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("untracked")
    return synthesize_patient(root, scenario="f", seed=11, index=0, untracked=True, motion=Motion())


@pytest.fixture(scope="module")
def loaded(moved: Path) -> PatientInputs:
    return load_patient(moved)


def _truth(folder: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((folder / "truth.json").read_text(encoding="utf-8"))
    return data


def _ct_dates(folder: Path) -> list[str]:
    return [d["date"] for d in _truth(folder)["lesions"][0]["diameters"]]


def _present(truth: dict[str, Any]) -> dict[str, set[str]]:
    """Date -> the truth's lesion ids present that day."""
    out: dict[str, set[str]] = {}
    for lesion in truth["lesions"]:
        for d in lesion["diameters"]:
            if d["present"]:
                out.setdefault(d["date"], set()).add(lesion["lesion_id"])
    return out


def test_follow_up_segments_carry_no_shared_identity(loaded: PatientInputs) -> None:
    """The generator's option works: after the first CT, no segment is named by its lesion id
    (except N1 where it first appears), and every follow-up CT stands elsewhere."""
    names = [set(t.lesion_ids) for t in loaded.tracking]
    assert names[0] == {"B1", "B2"}
    assert [n & {"B1", "B2", "N1"} for n in names[1:]] == [set(), set(), {"N1"}, set()]
    origins = {t.ct.grid.origin_mm for t in loaded.timepoints}
    assert len(origins) == 5


def test_identities_are_recovered_after_rigid_motion(loaded: PatientInputs, moved: Path) -> None:
    """Every timepoint's masks carry the truth's lesion ids; N1 is new at t0 + 91 d."""
    present = _present(_truth(moved))
    got = {t.date.isoformat(): set(t.masks) for t in loaded.timepoints}
    assert got == present
    assert [sorted(t.masks) for t in loaded.timepoints][3] == ["B1", "B2", "N1"]
    follow_ups = loaded.tracking[1:]
    assert all(t.registration is not None and t.registration.kind == "rigid" for t in follow_ups)
    assert all(set(t.rules.values()) == {IdentityRule.GEOMETRY} for t in follow_ups)
    new = [link for t in follow_ups for link in t.links if link.kind is MatchKind.NEW]
    assert [(link.lesion_id, link.follow_up_ids) for link in new] == [("N1", ("N1",))]
    matched = [link for t in follow_ups for link in t.links if link.kind is MatchKind.MATCHED]
    assert len(matched) == 2 + 2 + 2 + 3
    assert all(link.distance_mm is not None and link.distance_mm < 3.0 for link in matched)
    assert all(link.overlap is not None and link.overlap > 0.9 for link in matched)


def test_registration_undoes_the_motion(loaded: PatientInputs) -> None:
    """CT 2 moved +1×, CT 0 −1× the motion: 8° and 20 mm apart; registered back within 1 mm."""
    import numpy as np

    reg = loaded.tracking[2].registration
    assert reg is not None
    motion = Motion()
    probe = np.array([[0.0, 0.0, 0.0], [100.0, 50.0, 0.0], [-80.0, 40.0, 100.0]])

    def move(points: np.ndarray, scale: float) -> np.ndarray:
        a = np.deg2rad(motion.degrees * scale)
        rotation = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
        return points @ rotation.T + scale * np.asarray(motion.shift_mm)

    at_first = move(probe, -1.0)
    at_third = move(probe, 1.0)
    assert np.abs(reg.to_baseline(at_third) - at_first).max() < 1.0


def test_analysis_of_the_moved_untracked_patient_equals_truth(
    loaded: PatientInputs, moved: Path
) -> None:
    truth = _truth(moved)
    result = result_dict(analyze(loaded), loaded)
    got = {k: result["abscopal"][k] for k in ("status", "certainty", "lesions")}
    assert got == truth["abscopal"]
    fields = {lesion["lesion_id"]: lesion["field"] for lesion in result["lesions"]}
    assert fields == {lesion["lesion_id"]: lesion["field"] for lesion in truth["lesions"]}
    tracking = {t["date"]: t for t in result["tracking"]}
    third = tracking[loaded.timepoints[2].date.isoformat()]
    assert third["registration"]["rotation_deg"] == pytest.approx(2 * Motion().degrees, abs=0.2)
    assert {s["rule"] for s in third["segments"]} == {"geometry"}
    assert {link["kind"] for link in third["links"]} == {"matched"}


def test_vanished_lesion_is_absent_and_found_again(loaded: PatientInputs) -> None:
    """B2 left out of the SEG at t0 + 91 d: it disappears there, and its next segment (t0 + 182 d,
    per-date name) is matched to it by its mask of t0 − 84 d."""
    chosen = [loaded.timepoints[i] for i in (0, 3, 4)]
    scans = [
        Scan(
            date=t.date,
            ct=t.ct,
            masks={
                f"s{n}-{lesion}" if n else lesion: replace(m, lesion_id=f"s{n}-{lesion}")
                for lesion, m in t.masks.items()
                if not (n == 1 and lesion == "B2")
            },
        )
        for n, t in enumerate(chosen)
    ]
    tracked = track_lesions(scans)
    assert dict(tracked[1].lesion_ids) == {"s1-B1": "B1", "s1-N1": "s1-N1"}
    gone = [link for link in tracked[1].links if link.kind is MatchKind.DISAPPEARED]
    assert [link.lesion_id for link in gone] == ["B2"]
    assert dict(tracked[2].lesion_ids) == {"s2-B1": "B1", "s2-B2": "B2", "s2-N1": "s1-N1"}


def _with_matches(folder: Path, tmp_path: Path, entries: str) -> Path:
    copy = tmp_path / folder.name
    shutil.copytree(folder, copy)
    manifest = copy / "manifest.yaml"
    manifest.write_text(manifest.read_text(encoding="utf-8") + entries, encoding="utf-8")
    return copy


def _segment_of(loaded: PatientInputs, n: int, lesion: str) -> str:
    return next(s for s, lid in loaded.tracking[n].lesion_ids.items() if lid == lesion)


def test_manifest_forces_a_lesion_to_be_new(
    loaded: PatientInputs, moved: Path, tmp_path: Path
) -> None:
    """`matches: {date: last CT, segment: B2's segment, lesion_id: new}`: B2 is absent on the last
    CT and a new lesion stands there under the segment's name: RECIST reads PD there."""
    last = loaded.timepoints[-1].date
    segment = _segment_of(loaded, 4, "B2")
    folder = _with_matches(
        moved,
        tmp_path,
        f"matches:\n- date: {last.isoformat()}\n  segment: {segment}\n  lesion_id: new\n",
    )
    forced = load_patient(folder)
    assert sorted(forced.timepoints[-1].masks) == sorted(["B1", "N1", segment])
    assert forced.tracking[-1].rules[segment] is IdentityRule.MANIFEST
    new = next(link for link in forced.tracking[-1].links if link.kind is MatchKind.NEW)
    assert (new.lesion_id, new.evidence) == (segment, "manifest")
    result = result_dict(analyze(forced), forced)
    b2 = next(lesion for lesion in result["lesions"] if lesion["lesion_id"] == "B2")
    assert [m["present"] for m in b2["measurements"]] == [True, True, True, True, False]
    assert segment in {lesion["lesion_id"] for lesion in result["lesions"]}
    recist = result["criteria"]["recist11"]["all_lesions"]["timepoints"]
    assert [t["category"] for t in recist] == ["NON_CR_NON_PD", "NON_CR_NON_PD", "PD"]
    plain = result_dict(analyze(loaded), loaded)["criteria"]["recist11"]["all_lesions"]
    assert [t["category"] for t in plain["timepoints"]] == ["NON_CR_NON_PD"] * 3


def test_match_naming_a_missing_segment_names_file_line_and_fix(
    moved: Path, tmp_path: Path
) -> None:
    day = _ct_dates(moved)[3]
    folder = _with_matches(
        moved, tmp_path, f"matches:\n- date: {day}\n  segment: lesion 9\n  lesion_id: B1\n"
    )
    with pytest.raises(
        IngestError, match=r"manifest.yaml line \d+: matches.0.segment: the SEG"
    ) as err:
        load_patient(folder)
    assert f"found ['{day.replace('-', '')}-" in str(err.value)
    assert "name one of them" in str(err.value)


def test_match_on_a_date_without_ct_is_refused(moved: Path, tmp_path: Path) -> None:
    day = date.fromisoformat(_ct_dates(moved)[3]) + timedelta(days=1)
    folder = _with_matches(
        moved, tmp_path, f"matches:\n- date: {day}\n  segment: N1\n  lesion_id: new\n"
    )
    with pytest.raises(IngestError, match=f"matches.0.date: no CT timepoint on {day}"):
        load_patient(folder)


def test_tracked_segs_need_no_registration(synthetic_patients: dict[str, Path]) -> None:
    """The default patients share TrackingUIDs: ids kept, nothing registered (N1 of scenario f is
    new by its own TrackingUID)."""
    inputs = load_patient(synthetic_patients["f"])
    assert all(t.registration is None and not t.links for t in inputs.tracking)
    rules = [set(t.rules.values()) for t in inputs.tracking]
    assert rules[0] == {IdentityRule.FIRST}
    assert rules[3] == {IdentityRule.TRACKING_UID, IdentityRule.NEW_TRACKING_UID}
    assert rules[4] == {IdentityRule.TRACKING_UID}


def test_a_tracking_uid_contradicting_geometry_is_kept_with_a_warning(
    loaded: PatientInputs, caplog: pytest.LogCaptureFixture
) -> None:
    """The last SEG says (TrackingUID) that B1's segment is B2, and has one untracked segment, so
    the CT is registered: the SEG's id is kept, a warning names the lesion and the distance."""
    first, last = loaded.timepoints[0], loaded.timepoints[-1]
    uid = {lesion: f"2.25.{n}" for n, lesion in enumerate(first.masks, start=1)}
    scans = [
        Scan(
            date=first.date,
            ct=first.ct,
            masks=first.masks,
            segments={k: Segment(name=k, label=k, tracking_uid=uid[k]) for k in first.masks},
        ),
        Scan(
            date=last.date,
            ct=last.ct,
            masks={"x": replace(last.masks["B1"], lesion_id="x"), "y": last.masks["N1"]},
            segments={"x": Segment(name="x", label="x", tracking_uid=uid["B2"])},
        ),
    ]
    with caplog.at_level(logging.WARNING, logger="abscopal.tracking"):
        tracked = track_lesions(scans)
    assert dict(tracked[1].lesion_ids) == {"x": "B2", "y": "y"}
    assert tracked[1].rules["x"] is IdentityRule.TRACKING_UID
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "lesion B2" in warning
    assert "TrackingUID names it" in warning
    link = next(link for link in tracked[1].links if link.lesion_id == "B2")
    assert link.distance_mm is not None and link.distance_mm > 100.0
    assert link.evidence.startswith("TrackingUID: registered centroids")

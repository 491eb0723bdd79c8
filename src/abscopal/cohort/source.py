"""What a cohort run reads: the patients of a SOURCE, and the hashes that make a run resumable.

SOURCE is one of:

- a folder whose sub-folders are patient folders (each with a `manifest.yaml`);
- a CSV file whose `path` column (else its first column) lists patient folders or manifests,
  relative to the CSV's folder;
- a DICOM tree to split by PatientID (any layout, patients mixed), with one manifest per
  patient: `SOURCE/manifests/<PatientID>.yaml`, or `SOURCE/manifests.csv` with the columns
  `patient_id,manifest` (paths relative to the CSV), or either passed as `manifests`. Only headers
  are read to split the tree. Each patient becomes a staging folder of hard links (copies across
  file systems) that mirrors the tree, so the manifest's paths are relative to the tree's root.

A folder patient's key is its folder name, made unique with a short hash of the path when two
folders share a name. A tree patient's key is a pseudonym, `pid-` and 12 hex digits of a hash of
its PatientID, so that logs, folder names and messages never show the ID unless `show_ids` asks.
A pseudonym is not anonymisation: a short ID can be found by hashing every candidate.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import json
import logging
import os
import shutil
from collections import defaultdict
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Final

from abscopal.errors import IngestError

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from abscopal.pipeline import Settings

logger = logging.getLogger(__name__)
NOT_INPUTS: Final = frozenset({"truth.json"})  # synthetic ground truth: never read by the analysis
MANIFEST: Final = "manifest.yaml"  # the name of a staged patient's manifest
MANIFESTS_DIR: Final = "manifests"
MANIFESTS_CSV: Final = "manifests.csv"
_CHUNK: Final = 1 << 20


@dataclass(frozen=True, slots=True, kw_only=True)
class PatientSource:
    """One patient of a cohort: a stable key and the folder (or manifest) to analyze.

    A tree patient also carries its `members`, (name in the staging folder, file in the tree)
    with the manifest first, which `stage` links into `path`; or `missing`, why it cannot be.
    """

    key: str
    path: Path
    members: tuple[tuple[str, Path], ...] = ()
    missing: str | None = None

    @property
    def from_tree(self) -> bool:
        """True for a patient split out of a DICOM tree (staged before analysis)."""
        return bool(self.members) or self.missing is not None


def discover(
    source: Path,
    *,
    manifests: Path | None = None,
    staging: Path | None = None,
    show_ids: bool = False,
) -> list[PatientSource]:
    """The patients of `source`, sorted by key; see the module docstring for the three kinds.

    `staging` is where tree patients are staged (required for a tree, and never scanned as part
    of it); `show_ids` lets messages name PatientIDs.
    """
    source = Path(source)
    if source.is_file() and source.suffix.lower() == ".csv":
        return _keyed(_from_csv(source))
    if not source.is_dir():
        msg = f"SOURCE {source}: expected a folder of patient folders, a DICOM tree or a .csv"
        raise IngestError(msg)
    manifests = manifests or _default_manifests(source)
    if manifests is not None:
        if staging is None:
            msg = "a DICOM tree SOURCE needs a staging folder for its patients"
            raise ValueError(msg)
        return split_tree(source, manifests, staging=staging, show_ids=show_ids)
    folders = sorted(p for p in source.iterdir() if p.is_dir() and not p.name.startswith("."))
    if folders and not any((f / MANIFEST).is_file() for f in folders):
        msg = (
            f"SOURCE {source}: none of its {len(folders)} sub-folders holds a {MANIFEST}. A folder "
            f"of patient folders needs one in each; a DICOM tree to split by PatientID needs its "
            f"manifests in {source / MANIFESTS_DIR}/<PatientID>.yaml or {source / MANIFESTS_CSV} "
            "(columns patient_id,manifest), or --manifests"
        )
        raise IngestError(msg)
    return _keyed(folders)


def _default_manifests(source: Path) -> Path | None:
    for candidate in (source / MANIFESTS_DIR, source / MANIFESTS_CSV):
        if candidate.exists():
            return candidate
    return None


def _keyed(paths: list[Path]) -> list[PatientSource]:
    names: dict[str, int] = defaultdict(int)
    for p in paths:
        names[_folder(p).name] += 1
    out = []
    for p in paths:
        name = _folder(p).name
        key = name if names[name] == 1 else f"{name}-{_short(str(p.resolve()))}"
        out.append(PatientSource(key=key, path=p))
    return sorted(out, key=lambda s: s.key)


def _from_csv(path: Path) -> list[Path]:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        msg = f"SOURCE {path}: the CSV is empty; it needs a header and one patient folder a row"
        raise IngestError(msg)
    header = [h.strip().lower() for h in rows[0]]
    column = header.index("path") if "path" in header else 0
    return [
        (path.parent / row[column].strip()).resolve()
        for row in rows[1:]
        if len(row) > column and row[column].strip()
    ]


def _folder(path: Path) -> Path:
    return path.parent if path.is_file() else path


def _short(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


# ---------------------------------------------------------------- a DICOM tree split by PatientID


def pseudonym(patient_id: str) -> str:
    """The stable key of a tree patient: never the PatientID itself."""
    return "pid-" + hashlib.sha256(f"abscopal cohort\0{patient_id}".encode()).hexdigest()[:12]


def split_tree(
    root: Path, manifests: Path, *, staging: Path, show_ids: bool = False
) -> list[PatientSource]:
    """One patient per PatientID under `root` (headers only) or in `manifests`, sorted by key.

    A patient without a manifest, or with a manifest but no file, carries the reason in
    `missing` and fails alone when the run reaches it. Unreadable files and series without
    PatientID are left out with a warning that counts them (their paths may carry names).
    """
    by_id = _manifests(manifests)
    files = _files_by_patient(root, exclude=(manifests, staging))
    ids = sorted(set(files) | set(by_id))
    logger.info("DICOM tree: %d patient(s) by PatientID, %d manifest(s)", len(files), len(by_id))
    out = []
    for patient_id in ids:
        key = pseudonym(patient_id)
        manifest, found = by_id.get(patient_id), files.get(patient_id, [])
        if manifest is not None and found:
            members = _members(root, manifest, found)
            out.append(PatientSource(key=key, path=staging / key, members=members))
            continue
        reason = _missing(key, patient_id if show_ids else None, manifests, root, manifest)
        out.append(PatientSource(key=key, path=staging / key, missing=reason))
    return out


def _missing(
    key: str, patient_id: str | None, manifests: Path, root: Path, manifest: Path | None
) -> str:
    """Why a tree patient cannot be analysed; names the PatientID only when it is given."""
    named = f"patient {key}" + (
        f" (PatientID {patient_id!r})" if patient_id else " (--show-patient-ids names it)"
    )
    if manifest is not None:
        return f"{named} has a manifest but no DICOM file under {root}"
    if manifests.is_dir():
        return f"no manifest for {named}: write {manifests}/<its PatientID>.yaml"
    return f"no manifest for {named}: add its row to {manifests}"


def _manifests(location: Path) -> dict[str, Path]:
    """PatientID → manifest, from a folder of `<PatientID>.yaml` or a CSV (patient_id,manifest)."""
    if location.is_dir():
        return {
            p.stem: p
            for p in sorted(location.iterdir())
            if p.suffix.lower() in {".yaml", ".yml"} and not p.name.startswith(".")
        }
    if location.is_file() and location.suffix.lower() == ".csv":
        with location.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            fields = {f.strip().lower(): f for f in reader.fieldnames or []}
            if not {"patient_id", "manifest"} <= fields.keys():
                msg = f"{location}: needs the columns patient_id and manifest, got {sorted(fields)}"
                raise IngestError(msg)
            return {
                row[fields["patient_id"]].strip(): location.parent / row[fields["manifest"]].strip()
                for row in reader
                if row[fields["patient_id"]].strip()
            }
    msg = f"manifests {location}: expected a folder of <PatientID>.yaml or a .csv"
    raise IngestError(msg)


def _files_by_patient(root: Path, *, exclude: tuple[Path, ...]) -> dict[str, list[Path]]:
    from abscopal.io.dicom import scan_folder

    try:
        scan = scan_folder(root)
    except IngestError:  # not one readable DICOM file: every manifest's patient fails alone
        return {}
    if scan.bad_files:
        logger.warning("DICOM tree: %d unreadable file(s) left out", len(scan.bad_files))
    skip = [e.absolute() for e in exclude]  # e.g. an --out inside the tree
    files: dict[str, list[Path]] = defaultdict(list)
    anonymous = 0
    for series in scan.series:
        if not series.patient_id.strip():
            anonymous += len(series.files)
            continue
        files[series.patient_id].extend(
            f for f in series.files if not any(f.absolute().is_relative_to(e) for e in skip)
        )
    if anonymous:
        logger.warning("DICOM tree: %d file(s) without PatientID (0010,0020) left out", anonymous)
    return {pid: sorted(found) for pid, found in files.items() if found}


def _members(root: Path, manifest: Path, files: Iterable[Path]) -> tuple[tuple[str, Path], ...]:
    return ((MANIFEST, manifest), *((f.relative_to(root).as_posix(), f) for f in files))


def stage(patient: PatientSource) -> None:
    """Build a tree patient's folder at `patient.path`: hard links, copies across file systems.

    Rebuilt whole every time (atomically), so it always mirrors the tree as hashed; a patient
    that cannot be staged raises `IngestError` with the reason.
    """
    from abscopal.atomic import atomic_dir

    if patient.missing is not None:
        raise IngestError(patient.missing)
    with atomic_dir(patient.path) as tmp:
        for name, file in patient.members:
            target = tmp / name
            target.parent.mkdir(parents=True, exist_ok=True)
            _link_or_copy(file, target)


def _link_or_copy(file: Path, target: Path) -> None:
    # a hard link, not a symlink: the pipeline resolves paths and must stay inside the folder
    try:
        os.link(file, target)
    except OSError as exc:
        if exc.errno not in {errno.EXDEV, errno.EPERM, errno.EMLINK}:
            raise
        shutil.copy2(file, target)


# ---------------------------------------------------------------- hashes


def input_files(patient: PatientSource) -> list[tuple[str, Path]]:
    """(relative name, file) of every input of a patient, sorted by name."""
    if patient.from_tree:
        return sorted(patient.members)
    folder = _folder(Path(patient.path))
    if not folder.is_dir():
        return []
    return sorted(
        (f.relative_to(folder).as_posix(), f)
        for f in folder.rglob("*")
        if f.is_file()
        and f.name not in NOT_INPUTS
        and not any(part.startswith(".") for part in f.relative_to(folder).parts)
    )


def input_sha256(patient: PatientSource, known: Mapping[str, str] | None = None) -> str:
    """One hash of a patient's inputs: each relative name with the SHA-256 of its content.

    `known` (relative name → SHA-256), e.g. the hashes the pipeline computed while reading the
    files, spares reading those files again; the result is the same either way.
    """
    known = known or {}
    files = input_files(patient)
    digest = hashlib.sha256()
    if not files:
        digest.update(f"missing:{patient.path}".encode())
    for name, file in files:
        digest.update(f"{name}\0{known.get(name) or file_sha256(file)}\n".encode())
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's content; an unreadable file hashes its error (the run records why)."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    except OSError as exc:
        return f"unreadable:{exc.errno}"
    return digest.hexdigest()


def settings_sha256(settings: Settings) -> str:
    """Hash of every setting that can change a number, and of the abscopal version."""
    text = json.dumps(
        {"abscopal": version("abscopal"), "settings": asdict(settings)},
        sort_keys=True,
        default=_plain,
    )
    return hashlib.sha256(text.encode()).hexdigest()


def _plain(value: object) -> object:
    if isinstance(value, (set, frozenset)):  # sorted: set order varies between processes
        return sorted(str(v) for v in value)
    return str(value)

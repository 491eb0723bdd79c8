"""What a cohort run reads: the patient folders of a SOURCE, and the hashes that make it resumable.

SOURCE is a folder whose sub-folders are patient folders (each with a `manifest.yaml`), or a CSV
file whose `path` column (else its first column) lists patient folders or manifests, relative to
the CSV's folder. A patient's key is its folder name, made unique with a short hash of the path
when two folders share a name.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Final

from abscopal.errors import IngestError

if TYPE_CHECKING:
    from abscopal.pipeline import Settings

NOT_INPUTS: Final = frozenset({"truth.json"})  # synthetic ground truth: never read by the analysis
_CHUNK: Final = 1 << 20


@dataclass(frozen=True, slots=True, kw_only=True)
class PatientSource:
    """One patient of a cohort: a stable key and the folder (or manifest) to analyze."""

    key: str
    path: Path


def discover(source: Path) -> list[PatientSource]:
    """The patients of `source` (a folder of patient folders, or a CSV listing them), sorted."""
    source = Path(source)
    if source.is_file() and source.suffix.lower() == ".csv":
        paths = _from_csv(source)
    elif source.is_dir():
        paths = sorted(p for p in source.iterdir() if p.is_dir() and not p.name.startswith("."))
    else:
        msg = f"SOURCE {source}: expected a folder of patient folders or a .csv listing them"
        raise IngestError(msg)
    names: dict[str, int] = {}
    for p in paths:
        names[_folder(p).name] = names.get(_folder(p).name, 0) + 1
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


def input_sha256(path: Path) -> str:
    """One hash of every input file of a patient folder: relative names and contents."""
    folder = _folder(Path(path))
    digest = hashlib.sha256()
    if not folder.is_dir():
        digest.update(f"missing:{folder}".encode())
        return digest.hexdigest()
    files = sorted(
        f
        for f in folder.rglob("*")
        if f.is_file()
        and f.name not in NOT_INPUTS
        and not any(part.startswith(".") for part in f.relative_to(folder).parts)
    )
    for file in files:
        digest.update(file.relative_to(folder).as_posix().encode() + b"\0")
        try:
            with file.open("rb") as handle:
                while chunk := handle.read(_CHUNK):
                    digest.update(chunk)
        except OSError as exc:  # unreadable: hash the error, the run records the failure
            digest.update(f"unreadable:{exc.errno}".encode())
        digest.update(b"\0")
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

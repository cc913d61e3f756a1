"""Dataset folders on shared storage: listing, zip download, safe zip upload, time stamps.

Why here and not in the builder: the API serves these without building anything,
and an uploaded dataset must obey the same rules as a built one (a plain name, a
folder under ``datasets/``, never half there).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from core.dataset_formats import describe_folder
from core.layout import DataRoot, UnsafeNameError, safe_name

TMP_PREFIX = ".tmp-"
METADATA_FILE = "dataset.json"
MAX_UPLOAD_BYTES = int(os.environ.get("OPEVA_DATASET_UPLOAD_MAX_BYTES", 2 * 1024**3))  # extracted size
MAX_UPLOAD_MEMBERS = int(os.environ.get("OPEVA_DATASET_UPLOAD_MAX_MEMBERS", 10_000))


class DatasetError(ValueError):
    """A dataset request that cannot be served as asked (status code in ``status``)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def parse_ts(value: str, what: str) -> datetime:
    """ISO 8601 or the UI's ``YYYY-MM-DD HH:mm:ss``; naive means UTC. Impossible dates
    (2025-02-30) are refused with the value in the message."""
    text = str(value).strip().replace("Z", "+00:00")
    try:
        ts = datetime.fromisoformat(text)
    except (TypeError, ValueError) as exc:
        reason = str(exc) if "out of range" in str(exc) or "must be in" in str(exc) else "expected ISO 8601 or YYYY-MM-DD HH:mm:ss"
        raise DatasetError(f"{what} {value!r} is not a valid timestamp: {reason}", 422) from None
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def read_metadata(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads((path / METADATA_FILE).read_text())
        return meta if isinstance(meta, dict) else {}
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return {}


def list_datasets(storage: DataRoot) -> list[dict[str, Any]]:
    """Complete datasets only (temporary build and upload folders are skipped)."""
    out: list[dict[str, Any]] = []
    if not storage.datasets_dir.is_dir():
        return out
    for path in sorted(storage.datasets_dir.iterdir()):
        if not path.is_dir() or path.name.startswith("."):
            continue
        try:  # links out of the root (a job can make them) are neither listed nor read through
            storage.inside(path)
            meta = storage.read_json_object(path / METADATA_FILE)
        except UnsafeNameError:
            continue
        created = meta.get("created") or datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc).isoformat()
        out.append({
            "name": path.name,
            "description": meta.get("description", ""),
            "size": folder_size(path),
            "created": created,
            "site": meta.get("site"),
            "from": meta.get("from"),
            "until": meta.get("until"),
            "period": meta.get("period"),
            "source": meta.get("source", "build" if meta else "unknown"),
            **describe_folder(path),
        })
    return out


def require_dataset(storage: DataRoot, name: str) -> Path:
    path = storage.dataset_dir(name)
    if not path.is_dir() and not path.is_symlink():
        raise DatasetError(f"no dataset named {name!r}", 404)
    return path


class _Sink(io.RawIOBase):
    """An unseekable stream zipfile writes into; chunks are taken as they are made."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        self._chunks.append(bytes(b))
        return len(b)

    def take(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data


def iter_zip(storage: DataRoot, folder: Path, chunk_size: int = 1 << 16) -> Iterator[bytes]:
    """The folder as a zip, produced piece by piece (never whole in memory).

    Files come from ``storage.iter_files``: links are neither stored nor followed,
    so a link a job left in a dataset cannot pull outside files into the zip.
    """
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for relative, src in storage.iter_files(folder):
            with archive.open(f"{folder.name}/{relative}", "w") as dst:
                while block := src.read(chunk_size):
                    dst.write(block)
                    if data := sink.take():
                        yield data
    if data := sink.take():
        yield data


def _members(archive: zipfile.ZipFile) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    """Regular files with safe relative paths; anything else refuses the whole upload.

    Refused: absolute paths, ``..``, backslashes, symlinks and other special files,
    more than MAX_UPLOAD_MEMBERS members, more than MAX_UPLOAD_BYTES uncompressed.
    One top-level folder common to every member (how zips of a folder look) is dropped.
    """
    infos = archive.infolist()
    if len(infos) > MAX_UPLOAD_MEMBERS:
        raise DatasetError(f"the zip has {len(infos)} members; the limit is {MAX_UPLOAD_MEMBERS}")
    files, total = [], 0
    for info in infos:
        name = info.filename
        path = PurePosixPath(name)
        if name.startswith("/") or "\\" in name or ".." in path.parts or (len(name) > 1 and name[1] == ":"):
            raise DatasetError(f"unsafe member path {name!r} in the zip")
        kind = stat.S_IFMT(info.external_attr >> 16)  # 0: no Unix type recorded (a plain file)
        if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
            raise DatasetError(f"member {name!r} is a link or special file; only regular files are accepted")
        if info.is_dir():
            continue
        total += info.file_size
        if total > MAX_UPLOAD_BYTES:
            raise DatasetError(f"the zip expands to more than {MAX_UPLOAD_BYTES} bytes")
        files.append((info, path))
    if not files:
        raise DatasetError("the zip holds no files")
    tops = {p.parts[0] for _, p in files}
    if len(tops) == 1 and all(len(p.parts) > 1 for _, p in files):
        files = [(i, PurePosixPath(*p.parts[1:])) for i, p in files]
    return files


def files_digest(folder: Path) -> str:
    """sha256 over the dataset's files (relative path and bytes, in name order), the metadata
    file left out (it holds the build's own time). Two builds of the same input give the same
    digest; it is the dataset's version."""
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()):
        rel = path.relative_to(folder).as_posix()
        if rel == METADATA_FILE:
            continue
        h.update(rel.encode() + b"\0")
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()


def extract_upload(storage: DataRoot, name: str, upload: BinaryIO) -> dict[str, Any]:
    """Unpack an uploaded zip into ``datasets/<name>/`` (409 if it exists, 400 if unsafe).

    Written under a temporary folder and renamed into place, so a failed or
    concurrent upload never leaves a half dataset listed. Sizes are counted while
    copying, so a zip lying about its sizes cannot fill the disk either.
    """
    name = safe_name(name, what="dataset name")
    final = storage.dataset_dir(name)
    if final.exists():
        raise DatasetError(f"dataset {name!r} already exists; delete it first or choose another name", 409)
    try:
        archive = zipfile.ZipFile(upload)
    except (zipfile.BadZipFile, OSError, ValueError):
        raise DatasetError("the upload is not a zip file") from None
    storage.datasets_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}upload-{name}-", dir=storage.datasets_dir))
    tmp.chmod(0o755)  # mkdtemp makes it 0700: simulators run unprivileged and must read datasets
    try:
        with archive:
            members = _members(archive)
            written = 0
            for info, rel in members:
                target = tmp.joinpath(*rel.parts)
                if tmp.resolve() not in target.resolve().parents:
                    raise DatasetError(f"unsafe member path {info.filename!r} in the zip")
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as src, open(target, "wb") as dst:
                    while block := src.read(1 << 16):
                        written += len(block)
                        if written > MAX_UPLOAD_BYTES:
                            raise DatasetError(f"the zip expands to more than {MAX_UPLOAD_BYTES} bytes")
                        dst.write(block)
        meta = read_metadata(tmp)
        # the digest is ours, never the zip's: it names the version jobs record (core/dataset_lineage.py)
        meta.update({"name": name, "source": "upload", "created": datetime.now(timezone.utc).isoformat(), "digest": files_digest(tmp)})
        meta.setdefault("description", "")
        (tmp / METADATA_FILE).write_text(json.dumps(meta, indent=2))
        if final.exists():
            raise DatasetError(f"dataset {name!r} already exists; delete it first or choose another name", 409)
        os.rename(tmp, final)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DatasetError(f"the zip is corrupt or uses an unsupported compression: {exc}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"message": "Dataset uploaded", "name": name, "size_bytes": folder_size(final), "files": len(members), **describe_folder(final)}

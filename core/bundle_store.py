"""The platform's policy bundles: ``<root>/bundles/<storage_dir_name>/`` plus ``bundles/index.json``.

Why a module: a bundle is copied out of a job's folder, which the job (hostile code) wrote, so
every file is read through :mod:`core.job_io` (no link followed, regular files only) with bounded
sizes and counts, and its sha256 is checked against the manifest's ``files`` list while copied.
Only files the manifest lists (and the manifest itself) are copied. The id is content-addressed
as upstream's: the first 16 hex of a sha256 over the files (path, then content; sorted by path),
so importing the same content twice gives the same id. No Prefect import.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from core import job_io
from core.kpis import read_job_kpis
from core.job_bundle import BUNDLE_DIR, MANIFEST, MAX_MANIFEST
from core.layout import write_json_atomic

MAX_FILES = 10_000
MAX_FILE_BYTES = 256 << 20
MAX_TOTAL_BYTES = 1 << 30
_ID = re.compile(r"^[0-9a-f]{16}$")
_SHA = re.compile(r"^[0-9a-f]{64}$")


class BundleError(Exception):
    """A bundle cannot be made or found; ``status`` is the HTTP answer (400, 404, 422)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def store_dir(root: Path) -> Path:
    return Path(root) / "bundles"


def _index_path(root: Path) -> Path:
    return store_dir(root) / "index.json"


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    """One writer of the index at a time (API workers are processes)."""
    store_dir(root).mkdir(parents=True, exist_ok=True)
    with open(store_dir(root) / ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def bundles_of_job(root: Path, job_id: str) -> list[str]:
    """The ids of the stored bundles made from ``job_id`` (the job detail links them)."""
    return [str(e["bundle_id"]) for e in list_bundles(root) if e.get("source_job_id") == job_id and e.get("bundle_id")]


def list_bundles(root: Path) -> list[dict[str, Any]]:
    """The index's entries, oldest first ([] when the store is empty)."""
    try:
        data = json.loads(_index_path(root).read_text())
    except (FileNotFoundError, ValueError):
        return []
    return list(data.get("bundles", [])) if isinstance(data, dict) else []


def get_bundle(root: Path, bundle_id: str) -> dict[str, Any]:
    for entry in list_bundles(root):
        if entry.get("bundle_id") == bundle_id:
            return entry
    raise BundleError(404, f"bundle {bundle_id!r} not found")


def bundle_files(root: Path, bundle_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(index entry, ``[{path, size_bytes}]`` sorted by path) of a stored bundle."""
    entry = get_bundle(root, bundle_id)
    top = store_dir(root) / entry["storage_dir_name"]
    files = sorted((p.relative_to(top).as_posix(), p.lstat().st_size) for p in top.rglob("*") if p.is_file() and not p.is_symlink())
    return entry, [{"path": p, "size_bytes": s} for p, s in files]


CONTENT_CAP = 200_000  # upstream's files/content cap (bytes)


def file_content(root: Path, bundle_id: str, rel: str) -> dict[str, Any]:
    """Upstream's ``files/content``: the first 200 kB of one file of a stored bundle, as text when
    it decodes as UTF-8. The path must stay in the bundle (no absolute path, no '..': 400) and be
    one of its regular files (404); nothing is followed through a link."""
    parts = PurePosixPath(rel).parts if rel else ()
    if not parts or rel.startswith("/") or ".." in parts or "\0" in rel:
        raise BundleError(400, f"path {rel[:200]!r} must be relative and stay inside the bundle")
    entry, listed = bundle_files(root, bundle_id)
    size = next((f["size_bytes"] for f in listed if f["path"] == PurePosixPath(rel).as_posix()), None)
    if size is None:
        raise BundleError(404, f"bundle {bundle_id} has no file {rel[:200]!r}")
    try:
        raw = job_io.read_bounded(store_dir(root) / entry["storage_dir_name"], PurePosixPath(rel).as_posix(), 0, CONTENT_CAP)
    except job_io.NotRegularFile:
        raise BundleError(404, f"bundle {bundle_id} has no file {rel[:200]!r}") from None
    try:
        text: str | None = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        # a cut in the middle of a character is still text; anything else is binary
        text = raw[:exc.start].decode("utf-8") if len(raw) == CONTENT_CAP and exc.start >= len(raw) - 3 else None
    return {"bundle_id": entry["bundle_id"], "path": PurePosixPath(rel).as_posix(), "is_text": text is not None,
            "size_bytes": size, "truncated": size > CONTENT_CAP, "content": text}


def delete_bundle(root: Path, bundle_id: str) -> dict[str, Any]:
    """Remove the bundle's folder and its index entry; returns the entry."""
    if not _ID.match(bundle_id):
        raise BundleError(404, f"bundle {bundle_id!r} not found")
    with _locked(root):
        entries = list_bundles(root)
        entry = next((e for e in entries if e.get("bundle_id") == bundle_id), None)
        if entry is None:
            raise BundleError(404, f"bundle {bundle_id!r} not found")
        write_json_atomic(_index_path(root), {"bundles": [e for e in entries if e is not entry]}, durable=True)
        shutil.rmtree(store_dir(root) / entry["storage_dir_name"], ignore_errors=True)
    return entry


def _read_manifest(job_dir: Path, job_id: str) -> tuple[bytes, dict[str, Any]]:
    where = f"{BUNDLE_DIR}/{MANIFEST}"
    try:
        raw = job_io.read_bounded(job_dir, where, 0, MAX_MANIFEST + 1)
    except job_io.NotRegularFile as exc:
        raise BundleError(400, f"{where}: {exc.strerror}") from None
    except OSError:
        raw = b""
    if not raw:
        raise BundleError(404, f"job {job_id} has no policy bundle ({BUNDLE_DIR}/{MANIFEST} is missing)")
    if len(raw) > MAX_MANIFEST:
        raise BundleError(400, f"{where} is larger than {MAX_MANIFEST} bytes")
    try:
        manifest = json.loads(raw)
    except (ValueError, RecursionError):
        raise BundleError(400, f"{where} is not JSON") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), list):
        raise BundleError(400, f"{where} has no 'files' list")
    return raw, manifest


def _listed(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    """(path, sha256) of each file the manifest lists, checked to stay inside the bundle."""
    files = manifest["files"]
    if len(files) >= MAX_FILES:
        raise BundleError(400, f"the manifest lists {len(files)} files; at most {MAX_FILES - 1}")
    out: dict[str, str] = {}
    for item in files:
        path = item.get("path") if isinstance(item, dict) else None
        digest = item.get("sha256") if isinstance(item, dict) else None
        if not isinstance(path, str) or not isinstance(digest, str) or not _SHA.match(digest.lower()):
            raise BundleError(400, f"manifest entry {str(item)[:200]!r} needs a 'path' and a 64-hex 'sha256'")
        pure = PurePosixPath(path)
        if not path or pure.is_absolute() or ".." in pure.parts or "\\" in path or "\0" in path or pure.as_posix() == MANIFEST:
            raise BundleError(400, f"manifest path {path!r} is not a file inside the bundle")
        out[pure.as_posix()] = digest.lower()
    return sorted(out.items())


def _copy(job_dir: Path, rel: str, dest: Path, budget: int) -> tuple[str, int]:
    """Copy ``bundle/rel`` to ``dest`` without following links; (sha256, size)."""
    try:
        fd = job_io.open_regular(job_dir, f"{BUNDLE_DIR}/{rel}")
    except job_io.NotRegularFile as exc:
        raise BundleError(400, f"{rel}: {exc.strerror}") from None
    except FileNotFoundError:
        raise BundleError(422, f"{rel}: listed in the manifest but missing from the bundle") from None
    h, size = hashlib.sha256(), 0
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(dest, "wb") as out:
            while piece := os.read(fd, job_io.CHUNK):
                size += len(piece)
                if size > min(MAX_FILE_BYTES, budget):
                    raise BundleError(400, f"{rel}: larger than the limit ({MAX_FILE_BYTES} bytes a file, {MAX_TOTAL_BYTES} a bundle)")
                h.update(piece)
                out.write(piece)
    finally:
        os.close(fd)
    return h.hexdigest(), size


def _content_id(folder: Path, paths: list[str]) -> str:
    h = hashlib.sha256()
    for rel in sorted(paths):
        h.update(rel.encode() + b"\0")
        with open(folder / rel, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def import_job_bundle(root: Path, job_dir: Path, job_id: str, job_name: str | None) -> tuple[dict[str, Any], bool]:
    """Copy a job's ``bundle/`` into the store; (index entry, created). Blocking: call in a thread."""
    raw, manifest = _read_manifest(job_dir, job_id)
    listed = _listed(manifest)
    store_dir(root).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=store_dir(root), prefix=".import-"))
    try:
        budget = MAX_TOTAL_BYTES - len(raw)
        for rel, expected in listed:
            digest, size = _copy(job_dir, rel, tmp / rel, budget)
            budget -= size
            if digest != expected:
                raise BundleError(422, f"{rel}: sha256 {digest} does not match the manifest's {expected}")
        (tmp / MANIFEST).write_bytes(raw)
        kpis = read_job_kpis(job_dir).district or None  # lineage: how the policy scored when it was stored
        return _store_folder(root, tmp, [MANIFEST, *(rel for rel, _ in listed)],
                             lambda bundle_id: {**_entry(bundle_id, manifest, job_id, job_name, len(listed) + 1), "kpis": kpis})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _upload_paths(paths: list[str]) -> list[str]:
    """The upload's relative paths, checked (relative, no '..', no empty part) and re-rooted at
    the manifest: a browser sends a picked folder as ``<folder>/...``, and upstream takes the
    manifest at the root or one folder down."""
    clean = []
    for rel in paths:
        parts = PurePosixPath(rel.replace("\\", "/")).parts if isinstance(rel, str) else ()
        if not parts or rel.startswith(("/", "\\")) or ".." in parts or "\0" in rel or len(rel) > 1000:
            raise BundleError(400, f"relative path {str(rel)[:200]!r} must be relative and stay inside the bundle")
        clean.append("/".join(parts))
    if len(set(clean)) != len(clean):
        raise BundleError(400, "relative_paths name a file twice")
    for _ in range(2):
        if MANIFEST in clean:
            return clean
        tops = {p.split("/", 1)[0] for p in clean}
        if len(tops) != 1 or any("/" not in p for p in clean):
            break
        clean = [p.split("/", 1)[1] for p in clean]
    if MANIFEST not in clean:
        raise BundleError(400, f"no {MANIFEST} at the root of the uploaded folder or one folder down")
    return clean


def import_upload(root: Path, files: list[tuple[str, Any]], name: str) -> tuple[dict[str, Any], bool]:
    """Store an uploaded folder (``(relative path, binary file object)`` pairs); (index entry, created).
    Same limits as a job's bundle; the manifest must be a JSON object. Blocking: call in a thread."""
    if not files:
        raise BundleError(400, "no files uploaded")
    if len(files) > MAX_FILES:
        raise BundleError(400, f"more than {MAX_FILES} files")
    paths = _upload_paths([rel for rel, _ in files])
    store_dir(root).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=store_dir(root), prefix=".upload-"))
    try:
        budget = MAX_TOTAL_BYTES
        for rel, (_, src) in zip(paths, files):
            dest = tmp / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            with open(dest, "xb") as out:
                while piece := src.read(job_io.CHUNK):
                    budget -= len(piece)
                    if out.tell() + len(piece) > MAX_FILE_BYTES or budget < 0:
                        raise BundleError(400, f"{rel}: larger than the limit ({MAX_FILE_BYTES} bytes a file, {MAX_TOTAL_BYTES} a bundle)")
                    out.write(piece)
        raw = (tmp / MANIFEST).read_bytes()
        try:
            manifest = json.loads(raw) if len(raw) <= MAX_MANIFEST else None
        except ValueError:
            manifest = None
        if not isinstance(manifest, dict):
            raise BundleError(400, f"{MANIFEST} is not a JSON object (of at most {MAX_MANIFEST} bytes)")
        return _store_folder(root, tmp, paths, _entry_of_upload(manifest, name, len(paths)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _entry_of_upload(manifest: dict[str, Any], name: str, count: int) -> Any:
    def make(bundle_id: str) -> dict[str, Any]:
        entry = _entry(bundle_id, manifest, "", name, count)
        return {**entry, "name": name[:200] or f"upload-{bundle_id}", "source_job_id": None, "source_job_name": None}
    return make


def _store_folder(root: Path, tmp: Path, paths: list[str], make_entry: Any) -> tuple[dict[str, Any], bool]:
    bundle_id = _content_id(tmp, paths)
    with _locked(root):
        entries = list_bundles(root)
        found = next((e for e in entries if e.get("bundle_id") == bundle_id), None)
        if found is not None:
            return found, False
        entry = make_entry(bundle_id)
        os.chmod(tmp, 0o755)  # mkdtemp's 0700: the inference targets read the store as uid 65534
        os.replace(tmp, store_dir(root) / entry["storage_dir_name"])
        write_json_atomic(_index_path(root), {"bundles": [*entries, entry]}, durable=True)
        return entry, True


def _entry(bundle_id: str, manifest: dict[str, Any], job_id: str, job_name: str | None, count: int) -> dict[str, Any]:
    def text(section: str, key: str) -> str | None:
        value = manifest.get(section, {}).get(key) if isinstance(manifest.get(section), dict) else None
        return value[:500] if isinstance(value, str) else None

    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"bundle_id": bundle_id, "name": job_name or f"job-{job_id}", "storage_dir_name": bundle_id,
            "file_count": count, "created_at": now, "updated_at": now,
            "source_job_id": job_id, "source_job_name": job_name,
            "config_sha256": text("simulator", "config_sha256"), "dataset_name": text("simulator", "dataset_name"),
            "algorithm": text("training", "algorithm")}

"""Names a user may give (files, folders, job ids), checked in full.

Split from :mod:`core.layout` (which re-exports all of it) so the rules for a
name are readable on their own. No Prefect import here.
"""

from __future__ import annotations

import os
import re
import uuid
from typing import Any


# fullmatch everywhere: with re.match, "$" also matches before a trailing newline.
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class UnsafeNameError(ValueError):
    """A user-supplied name that could escape its directory or is not a plain file name."""


class OutsideDataRoot(UnsafeNameError):
    """A path that, links followed, points outside the data root (or at no regular file)."""


class InvalidJobId(UnsafeNameError):
    """A job id that is not a UUID (job ids are Prefect flow-run ids)."""


def canonical_job_id(job_id: Any) -> str:
    """The one spelling of a job id: a lower-case, hyphenated UUID.

    Prefect accepts any case, so ``/job/<UPPER>`` finds the run; the files live
    under ``jobs/<canonical>/``, so every path is built from this form.
    """
    try:
        text = str(job_id)
        if len(text) > 64:
            raise ValueError
        return str(uuid.UUID(text))
    except (ValueError, TypeError, AttributeError):
        raise InvalidJobId(f"job id {str(job_id)[:80]!r} is not a UUID") from None


def safe_name(name: str, *, what: str = "name") -> str:
    """Return ``name`` if it is a plain file or folder name, else raise UnsafeNameError.

    Refused: empty names, ``..`` anywhere, path separators, absolute paths, names
    starting with a dot or dash, control characters and anything over 128 chars.
    """
    if not isinstance(name, str) or not name:
        raise UnsafeNameError(f"{what} must be a non-empty string")
    if "/" in name or "\\" in name or os.path.isabs(name):
        raise UnsafeNameError(f"{what} {name!r} must be a plain name, without '/' or an absolute path")
    if ".." in name:
        raise UnsafeNameError(f"{what} {name!r} must not contain '..'")
    if not _SAFE_NAME.fullmatch(name):
        raise UnsafeNameError(
            f"{what} {name!r} may only use letters, digits, '.', '_' and '-', "
            "start with a letter or digit, and be at most 128 characters"
        )
    return name

"""The SharedStorage block: where the shared data tree is, saved in Prefect.

Only the location lives here; the layout and the safe-name rules are in
:mod:`core.layout`, which needs no Prefect. ``OPEVA_DATA_DIR`` wins when set, so
tests and processes without a Prefect API still find the tree.
"""

from __future__ import annotations

import os

from prefect.blocks.core import Block
from pydantic import Field

from core.layout import DataRoot, data_root_from_env

DEFAULT_BLOCK_NAME = "default"


class SharedStorage(Block):
    """Root of the shared data tree (configs, datasets, job files) mounted on every host."""

    _block_type_name = "OPEVA Shared Storage"
    _block_type_slug = "opeva-shared-storage"
    _description = "Root of the OPEVA shared data tree: configs/, datasets/, jobs/. Mount it at the same path on every compute host."

    base_path: str = Field(description="Absolute path of the shared data root, identical on every host.")

    def data_root(self) -> DataRoot:
        return DataRoot(self.base_path)


def _block_name(block_name: str | None) -> str:
    return block_name or os.environ.get("OPEVA_STORAGE_BLOCK", DEFAULT_BLOCK_NAME)


def load_storage(block_name: str | None = None) -> DataRoot:
    """The data tree of the registered block (or ``OPEVA_DATA_DIR``)."""
    if os.environ.get("OPEVA_DATA_DIR"):
        return data_root_from_env()
    return SharedStorage.load(_block_name(block_name)).data_root()


async def aload_storage(block_name: str | None = None) -> DataRoot:
    """:func:`load_storage` for async callers (the API's start-up)."""
    if os.environ.get("OPEVA_DATA_DIR"):
        return data_root_from_env()
    return (await SharedStorage.aload(_block_name(block_name))).data_root()

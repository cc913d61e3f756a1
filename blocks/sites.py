"""The MongoDB block: the connection to the server whose databases are sites.

What is read from a site lives in :mod:`core.sites`; this is only where the server
is and its credentials (the URI is a secret).
"""

from __future__ import annotations

import os

import pymongo
from prefect.blocks.core import Block
from pydantic import Field, SecretStr

DEFAULT_BLOCK_NAME = "default"


class MongoSites(Block):
    """Connection to the MongoDB server whose databases are the sites."""

    _block_type_name = "OPEVA MongoDB Sites"
    _block_type_slug = "opeva-mongodb"
    _description = "MongoDB server holding one database per site. The URI is kept as a secret."

    uri: SecretStr = Field(description="mongodb://user:password@host:27017")
    server_selection_timeout_ms: int = 5000
    batch_size: int = Field(5000, ge=100, description="cursor batch size of dataset builds")

    def client(self, timeout_ms: int | None = None) -> pymongo.MongoClient:
        return pymongo.MongoClient(
            self.uri.get_secret_value(),
            serverSelectionTimeoutMS=timeout_ms or self.server_selection_timeout_ms,
            tz_aware=True,
        )


def load_mongo(block_name: str | None = None) -> MongoSites:
    """``MONGO_URI`` wins when set (tests, one-off scripts); else the saved block."""
    if os.environ.get("MONGO_URI"):
        return MongoSites(uri=os.environ["MONGO_URI"])
    return MongoSites.load(block_name or os.environ.get("OPEVA_MONGO_BLOCK", DEFAULT_BLOCK_NAME))


async def aload_mongo(block_name: str | None = None) -> MongoSites:
    """:func:`load_mongo` for async callers (the API's start-up)."""
    if os.environ.get("MONGO_URI"):
        return MongoSites(uri=os.environ["MONGO_URI"])
    return await MongoSites.aload(block_name or os.environ.get("OPEVA_MONGO_BLOCK", DEFAULT_BLOCK_NAME))



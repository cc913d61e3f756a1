"""Request bodies of the job-folder and archive routes (energaize_ui's shapes, §3 of the contract)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

OWNER_FIELD = Field(None, min_length=1, max_length=128, description="The user name the folders belong to: 1-128 letters, digits, "
                    "spaces or . @ + - _ (400 otherwise). Required while API tokens are off (422 without it); with tokens on, "
                    "ignored: the owner is always the token's user.")


def _model(example: dict) -> ConfigDict:
    return ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [example]})


class FolderRequest(BaseModel):
    model_config = _model({"owner": "alice", "name": "Q1 runs"})
    owner: str | None = OWNER_FIELD
    name: str = Field(min_length=1, max_length=100, description="1-100 letters, digits, spaces or . , ( ) ' & + # : - _")


class MoveRequest(BaseModel):
    model_config = _model({"owner": "alice", "folder_id": "6f1c2b7d9a0e4c3b8d5e7f9a1b2c3d4e"})
    owner: str | None = OWNER_FIELD
    folder_id: str | None = Field(..., max_length=64, description="One of the owner's folders, or null for none.")


class OwnerRequest(BaseModel):
    model_config = _model({"owner": "alice"})
    owner: str | None = OWNER_FIELD

"""The answers of ``/deploy/bundles*`` in upstream's shapes (OPEVA_UPSTREAM.md §5), plus lineage."""

from __future__ import annotations

from pydantic import BaseModel, Field


class BundleOut(BaseModel):
    bundle_id: str = Field(description="First 16 hex of a sha256 over the bundle's files (path, content; sorted by path).")
    name: str
    storage_dir_name: str
    file_count: int
    created_at: str
    updated_at: str
    source_job_id: str | None = Field(None, description="The job whose bundle/ this was copied from.")
    source_job_name: str | None = None
    config_sha256: str | None = Field(None, description="The simulator's config digest, from the manifest.")
    dataset_name: str | None = Field(None, description="The dataset the policy was trained on, from the manifest.")
    algorithm: str | None = None
    kpis: dict[str, float | None] | None = Field(None, description="The source job's district KPIs when the bundle was stored (lineage).")


class BundleCreatedOut(BaseModel):
    created: bool = Field(description="False: a bundle with the same content was already stored (same bundle_id).")
    bundle: BundleOut


class BundleFile(BaseModel):
    path: str
    size_bytes: int


class BundleFilesOut(BaseModel):
    bundle_id: str
    bundle_name: str
    file_count: int
    files: list[BundleFile]


class BundleDeletedOut(BaseModel):
    status: str = "deleted"
    bundle_id: str


class BundleFileContentOut(BaseModel):
    bundle_id: str
    path: str
    is_text: bool
    size_bytes: int
    truncated: bool = Field(description="The file is larger than the 200 kB shown.")
    content: str | None = Field(description="The first 200 kB as text; null for a binary file.")

"""The JSON shapes of the web API (for validation and the OpenAPI page at ``/docs``)."""

from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel, Field

MAX_K = 100  # hits per search through the web API
MAX_TAG = 200  # characters of a tag filter


class FaceOut(BaseModel):
    face: int = Field(description="face number, from 1, left to right")
    bbox: list[int] = Field(description="[top, right, bottom, left] in the query image's pixels")
    score: Optional[float] = None


class HitOut(BaseModel):
    rank: int
    id: str = Field(description="record id (use with /api/thumb/{id} and /api/search/id/{id})")
    file: Optional[str] = Field(None, description="file name of the stored image")
    similarity: Optional[float] = Field(None, description="cosine similarity (1 = identical)")
    distance: float
    tag: Optional[str] = None
    bbox: Optional[list[int]] = Field(None, description="face box [top, right, bottom, left] in original pixels")
    face: Optional[int] = None
    image_size: Optional[list[int]] = Field(None, description="[width, height] of the original image")
    thumb: str = Field(description="URL of the thumbnail")


class SearchOut(BaseModel):
    query: dict[str, Any]
    k: int
    tag: Optional[str] = None
    embed_ms: float = Field(description="time to decode and embed the query (and find its faces)")
    search_ms: float = Field(description="time the vector store took to search")
    hits: list[HitOut]


class EmbedderOut(BaseModel):
    kind: str
    name: str
    dim: int
    supports_text: bool
    per_face: bool


class HealthOut(BaseModel):
    status: str
    backend: str
    collection: str
    metric: str
    count: int
    embedder: EmbedderOut
    max_upload_bytes: int
    max_k: int


class TextQuery(BaseModel):
    text: str = Field(min_length=1, max_length=1000, examples=["a woman in a space suit"])
    k: int = Field(10, ge=1, le=MAX_K)
    tag: Optional[str] = Field(None, max_length=MAX_TAG)


class ErrorOut(BaseModel):
    error: str


ERRORS = {code: {"model": ErrorOut} for code in (400, 404, 422)}
IMAGE_ERRORS = {**ERRORS, 413: {"model": ErrorOut}, 415: {"model": ErrorOut}}
IMAGE_BODY = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["image"],
            "properties": {
                "image": {"type": "string", "format": "binary",
                          "description": "JPEG, PNG, WebP, GIF, BMP or TIFF, at most 10 MB by default"},
                "k": {"type": "integer", "default": 10, "minimum": 1, "maximum": MAX_K},
                "tag": {"type": "string", "description": "only records with this tag"},
                "face": {"type": "integer", "minimum": 1,
                         "description": "face collections: which face of the photo (from 1, left to right); "
                                        "needed when it holds several"},
            }}}},
    }
}

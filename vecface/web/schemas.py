"""The JSON shapes of the web API (for validation and the OpenAPI page at ``/docs``)."""

from __future__ import annotations

from typing import Any, Optional, Union

from pydantic import BaseModel, Field

MAX_K = 100  # hits per search through the web API
MAX_TAG = 200  # characters of a tag filter
MAX_NAME = 200  # characters of a person's name, a camera or a person filter


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
    person: Optional[str] = Field(None, description="the person id of the face (after vecface people)")
    taken: Optional[Union[str, float]] = Field(None, description="when the photo was taken (EXIF, ISO 8601)")
    camera: Optional[str] = None
    lat: Optional[float] = None
    lon: Optional[float] = None
    thumb: str = Field(description="URL of the thumbnail")


class FiltersIn(BaseModel):
    """Who, when, which camera and where (near a place, or in a box): the filters of ``vecface search``
    (blank = not filtered on)."""

    since: Optional[str] = Field(None, max_length=40, description="taken on or after (YYYY-MM-DD or ISO date/time)",
                                 examples=["2024-01-01"])
    until: Optional[str] = Field(None, max_length=40,
                                 description="taken on or before (a bare date includes that whole day)")
    camera: Optional[str] = Field(None, max_length=MAX_NAME, description="EXIF make and model, e.g. Canon EOS 5D")
    person: Optional[str] = Field(None, max_length=MAX_NAME, description="a person's name or id (vecface people)")
    near: Optional[str] = Field(None, max_length=60, description="LAT,LON in decimal degrees", examples=["38.72,-9.14"])
    km: Optional[float] = Field(None, description="the radius of near in km (default 50)")
    box: Optional[str] = Field(None, max_length=100, description="SOUTH,WEST,NORTH,EAST in decimal degrees",
                               examples=["36.9,-9.6,42.2,-6.2"])

    def given(self) -> dict[str, Any]:
        """The filters given (not blank), as sent."""
        values = ((name, getattr(self, name)) for name in FiltersIn.model_fields)
        return {name: v for name, v in values if v is not None and v != ""}


class SearchOut(BaseModel):
    query: dict[str, Any]
    k: int
    tag: Optional[str] = None
    filters: dict[str, Any] = Field(default_factory=dict, description="the filters applied (as given)")
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


class TextQuery(FiltersIn):
    text: str = Field(min_length=1, max_length=1000, examples=["a woman in a space suit"])
    k: int = Field(10, ge=1, le=MAX_K)
    tag: Optional[str] = Field(None, max_length=MAX_TAG)


class PersonOut(BaseModel):
    id: str = Field(description="person id (p1, p2, ...)")
    name: Optional[str] = None
    faces: int = Field(description="faces of this person in the collection")
    representative: Optional[str] = Field(None, description="record id of the face that best represents them")
    file: Optional[str] = Field(None, description="file name of the representative face's photo")
    face: str = Field(description="URL of a JPEG crop of the representative face")
    photos: str = Field(description="URL of their faces in the collection")


class PeopleOut(BaseModel):
    people: list[PersonOut]
    message: Optional[str] = Field(None, description="why there are none, and what to do")


class NameIn(BaseModel):
    name: Optional[str] = Field(None, max_length=MAX_NAME, description="the new name; null or empty removes it")


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
                **{name: {"type": "number" if name == "km" else "string", "description": f.description}
                   for name, f in FiltersIn.model_fields.items()},
            }}}},
    }
}

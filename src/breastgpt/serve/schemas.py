"""Request bodies of the OpenAI-compatible API. Unknown fields, wrong types (no coercion: `true` is not a number,
`"0.5"` is not a float) and out-of-range numbers are rejected (422)."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

MAX_PARTS = 256  # content parts per message; the server's own limits (media, characters) are checked after
MAX_SEED = 2**63 - 1  # torch seeds are 64-bit; OpenAI documents `seed` as an integer


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class TextPart(Strict):
    type: Literal["text"]
    text: str


class MediaURL(Strict):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(Strict):
    """OpenAI's image part: a data URL (PNG, JPEG, DICOM) or a file:// path under the server's media root."""

    type: Literal["image_url"]
    image_url: MediaURL


class VolumePart(Strict):
    """BreastGPT extension: a NIfTI/NRRD/DICOM volume (data URL, or file:// path — a DICOM series folder too)."""

    type: Literal["volume_url"]
    volume_url: MediaURL
    window: str | None = None


class SlideFeaturesPart(Strict):
    """BreastGPT extension: a slide's tile-feature file (HDF5) from `breastgpt slides extract`."""

    type: Literal["slide_features_url"]
    slide_features_url: MediaURL


ContentPart = Annotated[Union[TextPart, ImagePart, VolumePart, SlideFeaturesPart], Field(discriminator="type")]
ContentParts = Annotated[list[ContentPart], Field(min_length=1, max_length=MAX_PARTS)]


class ChatMessage(Strict):
    role: Literal["system", "user", "assistant"]
    content: Union[str, ContentParts]
    name: str | None = None


class ChatRequest(Strict):
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0, allow_inf_nan=False)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0, allow_inf_nan=False)
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    n: int = Field(default=1, ge=1, le=1)
    stream: bool = False
    stage: Literal["screening", "diagnosis", "treatment planning"] | None = None
    task: Literal["closed_vqa", "open_vqa", "grounding", "grounded_caption", "report"] = "open_vqa"
    user: str | None = None

    @property
    def requested_tokens(self) -> int:
        return self.max_completion_tokens or self.max_tokens or 256

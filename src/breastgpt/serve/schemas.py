"""Request bodies of the OpenAI-compatible API. Unknown fields, wrong types (no coercion: `true` is not a number,
`"0.5"` is not a float) and out-of-range numbers are rejected (422). Fields OpenAI defines whose value this
server does not implement (`n` > 1, a JSON `response_format`, tools, `logit_bias`) are valid here and refused by
`ChatRequest.unsupported` (400, naming the value that is supported)."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

MAX_PARTS = 256  # content parts per message; the server's own limits (media, characters) are checked after
MAX_SEED = 2**63 - 1  # torch seeds are 64-bit; OpenAI documents `seed` as an integer
MAX_STOP = 4  # OpenAI's limit on stop sequences
MAX_TOP_LOGPROBS = 20  # OpenAI's limit


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


class StreamOptions(Strict):
    include_usage: bool = False


class ResponseFormat(Strict):
    """Only `{"type": "text"}` is implemented; the JSON forms are accepted here and refused with a 400."""

    type: str
    json_schema: dict | None = None


Penalty = Annotated[float, Field(ge=-2.0, le=2.0, allow_inf_nan=False)]
StopSequence = Annotated[str, Field(min_length=1, max_length=256)]


class ChatRequest(Strict):
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0, allow_inf_nan=False)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0, allow_inf_nan=False)
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    n: int = Field(default=1, ge=1, le=128)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: StopSequence | Annotated[list[StopSequence], Field(max_length=MAX_STOP)] | None = None
    frequency_penalty: Penalty = 0.0
    presence_penalty: Penalty = 0.0
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)
    response_format: ResponseFormat | None = None
    tools: list[dict] | None = None
    tool_choice: str | dict | None = None
    parallel_tool_calls: bool | None = None
    logit_bias: dict[str, float] | None = None
    stage: Literal["screening", "diagnosis", "treatment planning"] | None = None
    task: Literal["closed_vqa", "open_vqa", "grounding", "grounded_caption", "report"] = "open_vqa"
    user: str | None = None  # OpenAI's end-user tag: accepted, never logged or used

    @property
    def requested_tokens(self) -> int:
        return self.max_completion_tokens or self.max_tokens or 256

    @property
    def stop_sequences(self) -> tuple[str, ...]:
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())

    def unsupported(self) -> str | None:
        """Why this valid request asks for something the server does not do (a 400 message), or None."""
        if self.n != 1:
            return "n must be 1: this server returns one choice per request"
        if self.response_format is not None and self.response_format.type != "text":
            return f"response_format type {self.response_format.type!r} is not supported; only 'text' is"
        if self.tools or self.tool_choice not in (None, "none"):
            return "tool calling is not supported: send no tools (tool_choice may only be 'none')"
        if self.logit_bias:
            return "logit_bias is not supported: send none or an empty object"
        if self.top_logprobs and not self.logprobs:
            return "top_logprobs needs logprobs: true"
        if self.logprobs and self.stream:
            return "logprobs are returned for non-streamed requests only: send stream: false"
        if self.stream_options is not None and not self.stream:
            return "stream_options is only allowed with stream: true"
        return None

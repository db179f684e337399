"""The client request shapes the gateway accepts, checked before any upstream is called.

A body of the wrong shape must cost nothing: it gets a 400 in the client's protocol naming the
field path, and no upstream ever sees it (a wrong type that reached Claude was billed and then
broke the gateway's own translation, security review finding 1). The models follow the public
OpenAI chat-completions and Anthropic Messages request references: the fields the gateway
reads or translates are typed strictly (no "1" for 1, no true for 1); fields it only passes on
are left to the upstream (`extra="allow"`), so a new optional API field is not refused here.

`check_request` also counts what a token estimate from the body's size cannot price: image
blocks (billed by pixels, not bytes), documents (PDF pages) and server tools (billed per use).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, ValidationError

from agentdeploy.serving.protocol.events import ApiKind, JsonObject

Num = StrictFloat | StrictInt
Pos = Annotated[StrictInt, Field(ge=1)]


class _Shape(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


# ---------------------------------------------------------------- OpenAI chat completions
class OaTextPart(_Shape):
    type: Literal["text"]
    text: StrictStr


class OaImageUrl(_Shape):
    url: StrictStr
    detail: StrictStr | None = None


class OaImagePart(_Shape):
    type: Literal["image_url"]
    image_url: OaImageUrl


class OaAudioPart(_Shape):
    type: Literal["input_audio"]
    input_audio: dict[str, Any]


class OaFilePart(_Shape):
    type: Literal["file"]
    file: dict[str, Any]


class OaRefusalPart(_Shape):
    type: Literal["refusal"]
    refusal: StrictStr


OaUserPart = Annotated[OaTextPart | OaImagePart | OaAudioPart | OaFilePart, Field(discriminator="type")]
OaAssistantPart = Annotated[OaTextPart | OaRefusalPart, Field(discriminator="type")]


class OaFunctionCall(_Shape):
    name: StrictStr
    arguments: StrictStr


class OaToolCall(_Shape):
    id: StrictStr
    type: Literal["function"] = "function"
    function: OaFunctionCall


class OaSystemMessage(_Shape):
    role: Literal["system", "developer"]
    content: StrictStr | list[OaTextPart]


class OaUserMessage(_Shape):
    role: Literal["user"]
    content: StrictStr | list[OaUserPart]


class OaAssistantMessage(_Shape):
    role: Literal["assistant"]
    content: StrictStr | list[OaAssistantPart] | None = None
    tool_calls: list[OaToolCall] | None = None


class OaToolMessage(_Shape):
    role: Literal["tool"]
    content: StrictStr | list[OaTextPart]
    tool_call_id: StrictStr


OaMessage = Annotated[OaSystemMessage | OaUserMessage | OaAssistantMessage | OaToolMessage, Field(discriminator="role")]


class OaFunctionDef(_Shape):
    name: StrictStr
    description: StrictStr | None = None
    parameters: dict[str, Any] | None = None


class OaTool(_Shape):
    type: Literal["function"]
    function: OaFunctionDef


class OaChosenFunction(_Shape):
    name: StrictStr


class OaToolChoice(_Shape):
    type: Literal["function"]
    function: OaChosenFunction


class OaStreamOptions(_Shape):
    include_usage: StrictBool | None = None


class OaChatRequest(_Shape):
    model: StrictStr | None = None
    messages: Annotated[list[OaMessage], Field(min_length=1)]
    stream: StrictBool | None = None
    stream_options: OaStreamOptions | None = None
    max_tokens: Pos | None = None
    max_completion_tokens: Pos | None = None
    temperature: Annotated[Num, Field(ge=0, le=2)] | None = None
    top_p: Annotated[Num, Field(ge=0, le=1)] | None = None
    #: The gateway answers with one choice: n > 1 would be billed n times and answered once.
    n: Literal[1] | None = None
    stop: StrictStr | Annotated[list[StrictStr], Field(max_length=4)] | None = None
    tools: list[OaTool] | None = None
    tool_choice: Literal["none", "auto", "required"] | OaToolChoice | None = None
    user: StrictStr | None = None
    presence_penalty: Annotated[Num, Field(ge=-2, le=2)] | None = None
    frequency_penalty: Annotated[Num, Field(ge=-2, le=2)] | None = None
    seed: StrictInt | None = None


# ---------------------------------------------------------------- Anthropic messages
class AnTextBlock(_Shape):
    type: Literal["text"]
    text: StrictStr


class AnImageBlock(_Shape):
    type: Literal["image"]
    source: dict[str, Any]


class AnDocumentBlock(_Shape):
    type: Literal["document"]
    source: dict[str, Any]


class AnToolUseBlock(_Shape):
    type: Literal["tool_use", "server_tool_use"]
    id: StrictStr
    name: StrictStr
    input: dict[str, Any]


class AnToolResultBlock(_Shape):
    type: Literal["tool_result"]
    tool_use_id: StrictStr
    content: StrictStr | list[Annotated[AnTextBlock | AnImageBlock | AnDocumentBlock, Field(discriminator="type")]] | None = None
    is_error: StrictBool | None = None


class AnThinkingBlock(_Shape):
    type: Literal["thinking"]
    thinking: StrictStr
    signature: StrictStr


class AnRedactedThinkingBlock(_Shape):
    type: Literal["redacted_thinking"]
    data: StrictStr


class AnToolOutputBlock(_Shape):
    """Results of Claude's own server tools, sent back as conversation history."""

    type: Literal["web_search_tool_result", "web_fetch_tool_result", "code_execution_tool_result", "search_result"]


AnBlock = Annotated[
    AnTextBlock | AnImageBlock | AnDocumentBlock | AnToolUseBlock | AnToolResultBlock | AnThinkingBlock
    | AnRedactedThinkingBlock | AnToolOutputBlock,
    Field(discriminator="type"),
]


class AnMessage(_Shape):
    role: Literal["user", "assistant"]
    content: StrictStr | list[AnBlock]


class AnTool(_Shape):
    """A client tool (`input_schema`) or an Anthropic-defined one (`type`, e.g. web_search_20250305)."""

    name: StrictStr
    type: StrictStr | None = None
    description: StrictStr | None = None
    input_schema: dict[str, Any] | None = None


class AnToolChoice(_Shape):
    type: Literal["auto", "any", "none", "tool"]
    name: StrictStr | None = None


class AnMetadata(_Shape):
    user_id: StrictStr | None = None


class AnMessagesRequest(_Shape):
    model: StrictStr | None = None
    messages: Annotated[list[AnMessage], Field(min_length=1)]
    max_tokens: Pos | None = None
    system: StrictStr | list[AnTextBlock] | None = None
    stream: StrictBool | None = None
    stop_sequences: list[StrictStr] | None = None
    temperature: Annotated[Num, Field(ge=0, le=1)] | None = None
    top_p: Annotated[Num, Field(ge=0, le=1)] | None = None
    top_k: Annotated[StrictInt, Field(ge=0)] | None = None
    tools: list[AnTool] | None = None
    tool_choice: AnToolChoice | None = None
    metadata: AnMetadata | None = None


# ---------------------------------------------------------------- checking
#: Tool type prefixes that Anthropic runs and bills per use (not by tokens).
SERVER_TOOL_PREFIXES = ("web_search", "web_fetch", "code_execution")


class RequestShapeError(ValueError):
    """A client body that does not have the protocol's shape: `path` names the field."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


@dataclass(frozen=True, slots=True)
class Priced:
    """What in a valid request a size-based token estimate cannot price."""

    images: int = 0
    documents: int = 0
    server_tools: int = 0


def _path(body: Any, loc: tuple[int | str, ...]) -> list[str]:
    """The error's location as a path through the client's own body: pydantic puts union
    member and tag names into `loc`, which are skipped unless they are real keys."""
    parts: list[str] = []
    node = body
    for i, step in enumerate(loc):
        if isinstance(node, dict) and isinstance(step, str) and step in node:
            node = node[step]
        elif isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node):
            node = node[step]
        elif i == len(loc) - 1 and isinstance(node, dict) and isinstance(step, str):
            pass  # a missing field: name it
        else:
            continue
        parts.append(str(step))
    return parts


_OBJECT_ERRORS = ("dict_type", "model_type", "model_attributes_type")


def _message(err: Any) -> str:
    if err["type"] in _OBJECT_ERRORS:
        text = "Input should be an object"
    else:
        text = str(err["msg"]).split(" or instance of ")[0]
    if err["type"].endswith("_type"):
        text += f" (got {type(err.get('input')).__name__})"
    return text


def _count(body: JsonObject, protocol: ApiKind) -> Priced:
    images = documents = 0
    for m in body["messages"]:
        content = m.get("content")
        if not isinstance(content, list):
            continue
        for part in content:
            kind = part.get("type")
            inner = part.get("content") if kind == "tool_result" and isinstance(part.get("content"), list) else [part]
            for p in inner:
                k = p.get("type")
                images += k in ("image", "image_url")
                documents += k in ("document", "file")
    servers = 0
    if protocol == "anthropic":
        servers = sum(1 for t in body.get("tools") or () if str(t.get("type") or "").startswith(SERVER_TOOL_PREFIXES))
    return Priced(images, documents, servers)


def check_request(protocol: ApiKind, body: JsonObject) -> Priced:
    """Raise RequestShapeError naming the first wrong field; else what the request holds."""
    model = OaChatRequest if protocol == "openai" else AnMessagesRequest
    try:
        model.model_validate(body)
    except ValidationError as exc:
        # Of a union's alternatives, name the one that got furthest into the client's body.
        located = [(_path(body, tuple(e["loc"])), e) for e in exc.errors(include_url=False, include_context=False)]
        path, err = max(located, key=lambda pe: len(pe[0]))
        raise RequestShapeError(".".join(path), _message(err)) from None
    return _count(body, protocol)

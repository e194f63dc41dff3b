"""The OpenAI request shapes the proxy checks before anything goes to a model server.

What the gateway knows of a chat completion, a completion and an embedding request is
checked here, with OpenAI's types and ranges (`max_tokens` an integer, `temperature`
from 0 to 2, `messages` a non-empty array of objects that have a `role`, ...); any other
field passes through unchecked (vendors' `top_k`, `repetition_penalty`, `logit_bias`
with their own ranges), and the body goes upstream as the client sent it. A request that
does not fit is a 400 in OpenAI's shape, naming the first field at fault in `param`
(`messages[0].role`).

The same shapes are the routes' request bodies in the gateway's OpenAPI schema.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema

# Integers a model server can hold (a C int64; token counts fit in an int32).
MAX_INT32 = 2**31 - 1
INT64 = (-(2**63), 2**63 - 1)


def _text_or_parts(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(part, dict) for part in value):
        return value
    raise ValueError("must be a string, an array of content parts (objects) or null")


def _stop(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    raise ValueError("must be a string, an array of strings or null")


def _token_ids(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(item, int) and not isinstance(item, bool) and 0 <= item <= MAX_INT32
        for item in value
    )


def _prompt(value: Any) -> Any:
    """A string, strings, token ids, or arrays of token ids (OpenAI's four forms)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and (
        all(isinstance(item, str) for item in value)
        or _token_ids(value)
        or all(_token_ids(item) for item in value)
    ):
        return value
    raise ValueError(
        "must be a string, an array of strings, an array of token ids or an array of "
        "arrays of token ids"
    )


_STRING: dict[str, Any] = {"type": "string"}
_NULL: dict[str, Any] = {"type": "null"}
_IDS: dict[str, Any] = {"type": "array", "items": {"type": "integer", "minimum": 0}}
Content = Annotated[
    Any,
    AfterValidator(_text_or_parts),
    WithJsonSchema({"anyOf": [_STRING, {"type": "array", "items": {"type": "object"}}, _NULL]}),
]
Stop = Annotated[
    Any,
    AfterValidator(_stop),
    WithJsonSchema({"anyOf": [_STRING, {"type": "array", "items": _STRING}, _NULL]}),
]
Prompt = Annotated[
    Any,
    AfterValidator(_prompt),
    WithJsonSchema(
        {
            "anyOf": [
                _STRING,
                {"type": "array", "items": _STRING},
                _IDS,
                {"type": "array", "items": _IDS},
            ]
        }
    ),
]


class _Shape(BaseModel):
    # strict: "5" is no integer and 1 no boolean, as in OpenAI's API; extra: fields the
    # gateway does not know pass through.
    model_config = ConfigDict(extra="allow", strict=True)


class Message(_Shape):
    role: str = Field(min_length=1)
    content: Content = None
    name: str | None = None


class _Request(_Shape):
    # Checked before the shape (a server's own path may leave it out: see `proxy`).
    model: str | None = Field(default=None, min_length=1)
    user: str | None = None


class _Generation(_Request):
    stream: bool | None = None
    stream_options: dict[str, Any] | None = None
    n: int | None = Field(default=None, ge=1, le=128)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    seed: int | None = Field(default=None, ge=INT64[0], le=INT64[1])
    stop: Stop = None
    logit_bias: dict[str, float] | None = None


class ChatRequest(_Generation):
    """POST /v1/chat/completions."""

    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_INT32)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=MAX_INT32)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)


class CompletionRequest(_Generation):
    """POST /v1/completions (0 tokens with `echo`: the prompt's log-probabilities)."""

    prompt: Prompt
    max_tokens: int | None = Field(default=None, ge=0, le=MAX_INT32)
    echo: bool | None = None
    logprobs: int | None = Field(default=None, ge=0, le=20)
    best_of: int | None = Field(default=None, ge=1, le=128)
    suffix: str | None = None


class EmbeddingRequest(_Request):
    """POST /v1/embeddings."""

    input: Prompt
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = Field(default=None, ge=1, le=MAX_INT32)


def _input(value: Any) -> Any:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(item, dict) for item in value):
        return value
    raise ValueError("must be a string or an array of input items (objects)")


Input = Annotated[
    Any,
    AfterValidator(_input),
    WithJsonSchema({"anyOf": [_STRING, {"type": "array", "items": {"type": "object"}}]}),
]


class ResponsesRequest(_Request):
    """POST /v1/responses: what the gateway translates into a chat completion (see
    `responses.requests`, which refuses what it cannot honour)."""

    input: Input
    instructions: str | None = None
    max_output_tokens: int | None = Field(default=None, ge=1, le=MAX_INT32)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stream: bool | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: dict[str, Any] | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    background: bool | None = None
    previous_response_id: str | None = None


class PassThroughRequest(_Request):
    """POST /v1/rerank, /v1/score, /v1/tokenize, /v1/detokenize and the form of
    /v1/audio/transcriptions: the gateway reads `model` (to route) and passes the rest
    on as it is; the runtime checks its own fields."""


Shape = (
    type[ChatRequest]
    | type[CompletionRequest]
    | type[EmbeddingRequest]
    | type[ResponsesRequest]
    | type[PassThroughRequest]
)


class ShapeError(ValueError):
    """The first field of a request that does not fit its shape."""

    def __init__(self, message: str, param: str, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


def param_of(location: Sequence[int | str]) -> str:
    """A field's place as OpenAI names it: `messages[0].role`."""
    param = ""
    for part in location:
        param += f"[{part}]" if isinstance(part, int) else f".{part}" if param else part
    return param


def check_shape(payload: dict[str, Any], shape: Shape) -> None:
    """Raises ShapeError for the first field of `payload` that `shape` refuses."""
    try:
        shape.model_validate(payload)
    except ValidationError as error:
        first = error.errors(include_url=False, include_context=False, include_input=False)[0]
        param = param_of(first["loc"])
        if first["type"] == "missing":
            raise ShapeError(
                f"Missing required parameter: '{param}'.", param, "missing_required_parameter"
            ) from None
        # A validator's ValueError reads "Value error, must be ...": the reason alone.
        reason = str(first["msg"]).removeprefix("Value error, ")
        code = "invalid_type" if str(first["type"]).endswith("_type") else "invalid_value"
        raise ShapeError(f"Invalid value for '{param}': {reason}.", param, code) from None


def _inlined(node: Any, definitions: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inlined(definitions[ref.removeprefix("#/$defs/")], definitions)
        return {key: _inlined(value, definitions) for key, value in node.items()}
    if isinstance(node, list):
        return [_inlined(item, definitions) for item in node]
    return node


def request_body(shape: type[BaseModel], *, model_required: bool = True) -> dict[str, Any]:
    """The route's request body in OpenAPI (`openapi_extra`), its definitions inlined;
    `model` required unless a server's own path fills it in."""
    schema = shape.model_json_schema()
    definitions = schema.pop("$defs", {})
    if model_required:
        schema["properties"]["model"] = {"type": "string", "minLength": 1, "title": "Model"}
        schema["required"] = ["model", *schema.get("required", [])]
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _inlined(schema, definitions)}},
        }
    }

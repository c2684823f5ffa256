"""The teacher interface shared by every backend."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any, ClassVar, Protocol

import xxhash
from pydantic import BaseModel, ConfigDict, field_validator
from taskseed.curation.record import Sampling
from taskseed.curation.terms.model_licenses import ModelTerms, load_model_licenses


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(slots=True)
class TeacherRequest:
    """One chat request: messages, sampling, and an optional JSON schema for the output."""

    messages: list[dict[str, str]]
    sampling: Sampling = field(default_factory=Sampling)
    json_schema: dict[str, Any] | None = None

    def cache_key(self, model: str) -> str:
        """Content address of the rendered request, the model and the sampling parameters."""
        payload = json.dumps(
            [model, self.messages, asdict(self.sampling), self.json_schema],
            sort_keys=True,
            ensure_ascii=False,
            separators=(",", ":"),
        )
        return xxhash.xxh3_128_hexdigest(payload.encode("utf-8"))


@dataclass(slots=True, kw_only=True)
class ModelOutcome:
    """What every model reply says of itself: `error` is set when it failed after all
    retries, `detail` is the server's own message when it sent one, and `fatal` marks a
    failure that says nothing about the request's content (the server was unreachable, timed
    out, overloaded, or rejected the request itself): the work is not done and must not be
    recorded as a failed example."""

    error: str | None = None
    detail: str = ""
    fatal: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(slots=True)
class TeacherResponse(ModelOutcome):
    """A completed chat request: the reply's text, why it stopped, and its tokens."""

    text: str = ""
    finish_reason: str = "stop"
    usage: Usage = field(default_factory=Usage)


class Teacher(Protocol):
    """A backend that answers a batch of chat requests, one response per request, in order."""

    model: str

    def generate(
        self,
        requests: list[TeacherRequest],
        on_response: Callable[[int, TeacherResponse], None] | None = None,
    ) -> list[TeacherResponse]:
        """Answer every request; `on_response(index, response)` is called as each completes."""
        ...

    def close(self) -> None: ...


class Transport:
    """Marks a config field that changes how requests are sent, not what is asked.

    `Annotated[int, TRANSPORT]`: such fields stay out of a stage's fingerprint, so that
    changing them on an existing run directory reuses its work.
    """

    def __repr__(self) -> str:
        return "TRANSPORT"


TRANSPORT = Transport()


class BackendConfig(BaseModel):
    """Base of each teacher backend's config (one class per backend module)."""

    model_config = ConfigDict(extra="forbid")

    # What the backend does: "chat" (teacher, judge) or "score" (a reward model).
    capability: ClassVar[str] = "chat"

    backend: str
    cache_dir: Annotated[str | None, TRANSPORT] = None  # the request cache (run directory)
    # The model's license or terms, an id of configs/model_licenses.yaml (None: looked up
    # there by model name). It decides what the model's text may be used for, not what the
    # model answers, so it stays out of `identity`.
    license: Annotated[str | None, TRANSPORT] = None

    @field_validator("license")
    @classmethod
    def _listed_license(cls, value: str | None) -> str | None:
        policy = load_model_licenses()
        if value is not None and not policy.knows(value):
            raise ValueError(f"'{value}' is not a license id of {policy.path.name} (known: "
                             f"{', '.join(sorted(policy.terms))}, or unknown)")
        return value

    def terms_name(self) -> str | None:
        """The name the model licenses table knows this model by."""
        return getattr(self, "model", None)

    def terms(self) -> ModelTerms:
        """The terms of the model's outputs (see taskseed.curation.terms.model_licenses)."""
        return load_model_licenses().resolve(self.terms_name(), self.license)

    def identity(self) -> dict[str, Any]:
        """The settings that decide what the teacher answers (everything not TRANSPORT)."""
        keep = {name for name, f in type(self).model_fields.items()
                if not any(isinstance(m, Transport) for m in f.metadata)}
        return self.model_dump(mode="json", include=keep)

    def build(self) -> Teacher:
        """The backend itself; GPU libraries are imported only here."""
        raise NotImplementedError

    def describe(self) -> str:
        """Where requests go, for messages."""
        return self.backend

    @property
    def concurrency(self) -> int:
        """How many requests the backend keeps in flight at once."""
        return 1

    @property
    def concurrent_callers(self) -> bool:
        """Whether threads of one process may ask this model at once (an HTTP client with one
        request pool per process); an in-process model answers one caller at a time."""
        return False

    def managed_server(self) -> Any:
        """The server a job starts for this model on its node (a `ServerConfig`), or None."""
        return None

    def in_process_gpus(self) -> int:
        """GPUs the model takes in the stage's own process (tensor parallelism; 0: none)."""
        return 0

    def probe(self, role: str = "teacher") -> None:
        """Fail with a one-line error when the backend cannot be reached (before work)."""

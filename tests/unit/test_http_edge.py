"""The one HTTP edge: every pts error has its entry in the table, and access is one object.

No database, no server.
"""

from __future__ import annotations

import importlib
import pkgutil
import uuid

import pytest
from litestar.datastructures import Headers
from litestar.exceptions import HTTPException

import pts
from pts.errors import (
    AppendToClosed,
    BadRequest,
    ContentTypeMismatch,
    ProducerSeqGap,
    PTSError,
    ReservedPath,
    StaleProducerEpoch,
    StreamDriven,
    StreamSeqConflict,
)
from pts.http.access import Access, Unauthorized, allow_everything
from pts.http.durable import wire
from pts.http.durable.append import AppendRequest, parse_append, refusal
from pts.http.durable.context import Target
from pts.http.durable.create import parse_create
from pts.http.durable.read import parse_read
from pts.http.errors import (
    ERRORS,
    INHERITED,
    INTERNAL_DETAIL,
    error_status,
    exception_content,
    internal_error_content,
    is_logged,
)
from pts.models import AppendOutcome, AppendResult, Producer


def _pts_errors() -> set[type[PTSError]]:
    """Every PTSError subclass defined anywhere in the package (every module imported)."""
    for module in pkgutil.walk_packages(pts.__path__, prefix="pts."):
        importlib.import_module(module.name)
    found: set[type[PTSError]] = set()
    todo = [PTSError]
    while todo:
        cls = todo.pop()
        if cls not in found and cls.__module__.split(".")[0] == "pts":
            found.add(cls)
            todo.extend(cls.__subclasses__())
    return found


def test_every_pts_error_has_an_entry_of_its_own_or_a_deliberate_inherited_one() -> None:
    """The rule: each PTSError subclass of pts is a key of ERRORS, or is listed in INHERITED.

    Inheriting the nearest base's entry silently is what would turn a new
    error into a 500 (or into its base's kind), so it has to be said: either
    an entry of its own, or a place in INHERITED with the reason there.
    """
    errors = _pts_errors()
    assert len(errors) > 20  # the walk found the package's errors, not just PTSError
    missing = sorted(
        f"{cls.__module__}.{cls.__qualname__}"
        for cls in errors
        if cls not in ERRORS and cls not in INHERITED
    )
    assert not missing, f"PTSError subclasses with no entry in pts.http.errors.ERRORS: {missing}"
    stale = sorted(cls.__qualname__ for cls in INHERITED if cls in ERRORS)
    assert not stale, f"in both ERRORS and INHERITED: {stale}"


def test_the_table_is_looked_up_along_the_mro() -> None:
    class Custom(pts.StreamNotFound):
        pass

    assert error_status(Custom("x")) == (404, "stream_not_found")
    driven = pts.AlreadyDriven(uuid.uuid4(), "done", 3)
    assert error_status(driven) == (409, "already_driven")  # not InvalidTransition's


def test_allow_everything_is_a_property_of_the_policy_not_of_the_functions_identity() -> None:
    assert Access(allow_everything).needs_stream is False
    # Any other hook is just a hook: shown the stream, even one that allows all.
    assert Access(lambda *_: True).needs_stream is True
    # A hook may say it never looks at the stream, or the access may say so for it.
    assert Access(lambda *_: True, needs_stream=False).needs_stream is False

    def hook(*_: object) -> bool:
        return True

    hook.needs_stream = False  # type: ignore[attr-defined]
    assert Access(hook).needs_stream is False
    # Without a hook, the admin token decides; nothing to skip.
    assert Access(None).needs_stream is True
    assert allow_everything(None, "delete", None) is True  # type: ignore[arg-type]


# -- the protocol app's answer to any failure, and its steps --------------------------


def test_exception_content_answers_every_failure_from_the_one_table() -> None:
    """A pts error by the table, a Litestar HTTPException by its status, anything else a 500."""
    status, content, headers = exception_content(
        pts.StreamNotFound("x"), debug=False, name_internal=False
    )
    assert (status, content["error"], headers) == (404, "stream_not_found", {})
    status, _, headers = exception_content(Unauthorized("no"), debug=False, name_internal=False)
    assert (status, headers) == (401, {"WWW-Authenticate": "Bearer"})
    too_large = HTTPException(status_code=413, detail="too big")
    assert exception_content(too_large, debug=True, name_internal=True) == (
        413,
        {"error": "http_error", "detail": "too big"},
        {},
    )
    boom = RuntimeError("secret")
    status, content, _ = exception_content(boom, debug=True, name_internal=False)
    assert (status, content["error"]) == (500, "internal_error")
    assert "secret" not in content["detail"]
    _, named, _ = exception_content(boom, debug=True, name_internal=True)
    assert named["detail"] == "RuntimeError: secret"
    assert internal_error_content(boom, debug=False)["detail"] == INTERNAL_DETAIL
    # Logged once by whoever answers: server failures, not the framework's own refusals.
    assert is_logged(500, boom)
    assert is_logged(503, pts.StoreUnavailable("down"))
    assert not is_logged(404, pts.StreamNotFound("x"))
    assert not is_logged(500, HTTPException(status_code=500))


def test_a_protocol_path_names_a_target() -> None:
    assert Target.parse("/chat/1/") == Target("chat/1", None)
    stream_id = uuid.uuid4()
    target = Target.parse(f"pts/{stream_id}")
    assert (target.stream_id, target.read_only) == (stream_id, True)
    with pytest.raises(ReservedPath):
        Target.parse("__ds/x")
    with pytest.raises(pts.StreamNotFound):
        Target.parse("/")
    with pytest.raises(pts.StreamNotFound):
        Target.parse("pts/not-a-uuid")


def test_the_verbs_parse_their_headers_and_query_before_any_work() -> None:
    created = parse_create(Headers({"stream-ttl": "60", "content-type": "text/plain"}))
    assert (created.ttl, created.content_type, created.closed) == (60, "text/plain", False)
    with pytest.raises(BadRequest, match="not both"):
        parse_create(Headers({"stream-ttl": "60", "stream-expires-at": "2030-01-01T00:00:00Z"}))
    with pytest.raises(BadRequest, match="need Stream-Forked-From"):
        parse_create(Headers({"stream-fork-offset": wire.format_offset(0)}))
    appended = parse_append(Headers({"stream-closed": "true", "stream-seq": "a"}))
    assert (appended.close, appended.stream_seq, appended.producer) == (True, "a", None)
    with pytest.raises(BadRequest, match="Stream-Seq must not be empty"):
        parse_append(Headers({"stream-seq": ""}))
    read = parse_read(b"offset=now&live=long-poll&cursor=c")
    assert (read.offset, read.live, read.cursor) == ("now", "long-poll", "c")
    assert parse_read(b"").offset == "-1"
    with pytest.raises(BadRequest, match="needs an offset"):
        parse_read(b"live=sse")
    with pytest.raises(BadRequest, match="give offset once"):
        parse_read(b"offset=-1&offset=-1")


def test_every_refused_append_is_a_typed_error_of_the_table() -> None:
    """Each store outcome but the two that succeed becomes a PTSError with an entry of its own."""
    wanted = AppendRequest(
        producer=Producer("p", 1, 0), close=False, stream_seq=None, content_type=None
    )
    refusals = {
        outcome: refusal(
            AppendResult(
                outcome=outcome,
                stream_id=None,
                size=3,
                closed=False,
                epoch=2,
                seq=5,
                expected_seq=4,
            ),
            wanted,
            "chat",
            {"stream-next-offset": wire.format_offset(3)},
        )
        for outcome in AppendOutcome
        if outcome not in (AppendOutcome.APPENDED, AppendOutcome.DUPLICATE)
    }
    assert {outcome: type(error) for outcome, error in refusals.items()} == {
        AppendOutcome.NOT_FOUND: pts.StreamNotFound,
        AppendOutcome.GONE: pts.StreamDeleted,
        AppendOutcome.DRIVEN: StreamDriven,
        AppendOutcome.CLOSED: AppendToClosed,
        AppendOutcome.CONTENT_TYPE: ContentTypeMismatch,
        AppendOutcome.STALE_EPOCH: StaleProducerEpoch,
        AppendOutcome.BAD_EPOCH_SEQ: BadRequest,
        AppendOutcome.SEQ_GAP: ProducerSeqGap,
        AppendOutcome.SEQ_CONFLICT: StreamSeqConflict,
    }
    assert all(type(error) in ERRORS for error in refusals.values())
    gap = refusals[AppendOutcome.SEQ_GAP]
    assert isinstance(gap, ProducerSeqGap)
    assert gap.headers == {"producer-expected-seq": "4", "producer-received-seq": "5"}

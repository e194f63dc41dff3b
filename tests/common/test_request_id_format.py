"""The request ids the platform makes, and what model servers get, as pure functions."""

from __future__ import annotations

import uuid

from modelserve.common.request_ids import model_server_request_id, new_request_id


def test_a_new_id_is_a_random_uuid4_in_hex() -> None:
    """What `uuid.uuid4().hex` gives: 32 hex digits, version 4, RFC 4122's variant."""
    made = {new_request_id() for _ in range(2000)}
    assert len(made) == 2000
    for request_id in made:
        parsed = uuid.UUID(request_id)
        assert parsed.hex == request_id
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)


def test_every_form_of_a_uuid_goes_as_it_came_and_anything_else_as_its_uuid5() -> None:
    """What `uuid.UUID` reads as a UUID passes unchanged (hex in either case, with dashes,
    braces, a urn: prefix); anything else goes as its UUID 5."""
    made = uuid.uuid4()
    for form in (made.hex, made.hex.upper(), str(made), f"{{{made}}}", made.urn):
        assert model_server_request_id(form) == form
    for other in ("g" * 32, made.hex[:31], "abc", "job-gen_1-0-1", made.hex + "0"):
        assert model_server_request_id(other) == str(uuid.uuid5(uuid.NAMESPACE_OID, other))

"""Message ids are ULIDs: millisecond time then fresh randomness, sortable as text."""

import itertools

from hypothesis import given
from hypothesis import strategies as st
from ulid import ULID

from coral.protocol.message import Message, TextPart, new_message_id

# The hand-written Crockford encoding the library replaced: ids it wrote must still parse.
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _reference_id(ms: int, randomness: bytes) -> str:
    value, chars = (ms << 80) | int.from_bytes(randomness, "big"), []
    for _ in range(26):
        value, rem = divmod(value, 32)
        chars.append(_CROCKFORD[rem])
    return "".join(reversed(chars))


@given(st.integers(min_value=0, max_value=2**48 - 1))
def test_id_carries_its_millisecond_and_is_a_valid_message_id(ms):
    message_id = new_message_id(ms)
    assert len(message_id) == 26 and set(message_id) <= set(_CROCKFORD)
    assert ULID.from_str(message_id).milliseconds == ms
    Message(id=message_id, sender="did:key:z6Mk", created_at=ms, parts=(TextPart(text="x"),))


@given(st.integers(min_value=0, max_value=2**48 - 1), st.binary(min_size=10, max_size=10))
def test_ids_written_by_the_old_encoder_parse_the_same(ms, randomness):
    old = _reference_id(ms, randomness)
    assert str(ULID.from_str(old)) == old
    assert ULID.from_str(old).bytes == ms.to_bytes(6, "big") + randomness


@given(st.lists(st.integers(min_value=0, max_value=2**48 - 1), min_size=2, max_size=20))
def test_ids_sort_by_time(times):
    ids = {ms: new_message_id(ms) for ms in times}
    assert sorted(ids.values()) == [ids[ms] for ms in sorted(ids)]


def test_ids_of_one_millisecond_take_fresh_randomness():
    ids = [new_message_id(1_700_000_000_000) for _ in range(64)]
    tails = {int(ULID.from_str(i).bytes[6:].hex(), 16) for i in ids}
    assert len(tails) == 64
    # Not ULID's monotonic increment: consecutive ids are not neighbours.
    ordered = sorted(tails)
    assert all(b - a > 1 for a, b in itertools.pairwise(ordered))

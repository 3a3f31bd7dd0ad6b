"""The protocol core, sans I/O: messages, canonical JSON, identities, signatures, limits, errors.

The common names are re-exported here; codecs between JSON and protobuf live
in ``coral.protocol.codec`` (not imported here: it loads the generated
protobuf modules, which a client that only signs messages does not need).
"""

from coral.protocol.agent import AgentManifest, AgentRecord, Price
from coral.protocol.canonical import canonical_json, parse_json
from coral.protocol.errors import (
    Conflict,
    CoralError,
    Forbidden,
    FreshnessError,
    InvalidMessage,
    NotFound,
    Replayed,
    ResourceExhausted,
    SignatureError,
    StorageUnavailable,
    Unauthenticated,
)
from coral.protocol.identity import Identity, PublicIdentity
from coral.protocol.limits import Limits
from coral.protocol.message import (
    DataPart,
    EncryptedPart,
    FilePart,
    Message,
    PaymentRef,
    TextPart,
    from_wire,
    new_message_id,
    now_ms,
    to_wire,
)
from coral.protocol.signing import sign_message, sign_object, verify_message_signature
from coral.protocol.verify import MessageVerifier

__all__ = [
    "AgentManifest",
    "AgentRecord",
    "Conflict",
    "CoralError",
    "DataPart",
    "EncryptedPart",
    "FilePart",
    "Forbidden",
    "FreshnessError",
    "Identity",
    "InvalidMessage",
    "Limits",
    "Message",
    "MessageVerifier",
    "NotFound",
    "PaymentRef",
    "Price",
    "PublicIdentity",
    "Replayed",
    "ResourceExhausted",
    "SignatureError",
    "StorageUnavailable",
    "TextPart",
    "Unauthenticated",
    "canonical_json",
    "from_wire",
    "new_message_id",
    "now_ms",
    "parse_json",
    "sign_message",
    "sign_object",
    "to_wire",
    "verify_message_signature",
]

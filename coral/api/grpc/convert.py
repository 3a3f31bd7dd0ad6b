"""Conversions between domain objects and coral.v1 protobuf messages."""

from __future__ import annotations

from pydantic import ValidationError

from coral.coordination.model import HistoryPage, InboxEntry, Thread, ThreadEntry, WaitResult
from coral.protocol.agent import AgentManifest, AgentRecord, Price
from coral.protocol.canonical import canonical_json
from coral.protocol.codec import message_to_proto
from coral.protocol.errors import InvalidMessage
from coral.v1 import agents_pb2, coordination_pb2, message_pb2


def record_to_proto(record: AgentRecord) -> agents_pb2.AgentRecord:
    m = record.manifest
    return agents_pb2.AgentRecord(
        agent=record.agent,
        home_node=record.home_node,
        manifest=agents_pb2.AgentManifest(
            name=m.name,
            version=m.version,
            description=m.description,
            capabilities=list(m.capabilities),
            prices=[
                agents_pb2.Price(
                    capability=p.capability, amount=p.amount, currency=p.currency, unit=p.unit
                )
                for p in m.prices
            ],
            endpoints=list(m.endpoints),
        ),
        version=record.version,
        updated_at=record.updated_at,
        deleted=record.deleted,
        agent_signature=record.agent_signature or "",
        node_signature=record.node_signature or "",
    )


def record_from_proto(msg: agents_pb2.AgentRecord) -> AgentRecord:
    """The record a client sent; InvalidMessage (invalid_record) when it breaks the schema."""
    try:
        return _record_from_proto(msg)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "record"
        raise InvalidMessage(f"{where}: {first['msg']}", reason="invalid_record") from None


def _record_from_proto(msg: agents_pb2.AgentRecord) -> AgentRecord:
    m = msg.manifest
    return AgentRecord(
        agent=msg.agent,
        home_node=msg.home_node,
        manifest=AgentManifest(
            name=m.name,
            version=m.version,
            description=m.description,
            capabilities=tuple(m.capabilities),
            prices=tuple(
                Price(capability=p.capability, amount=p.amount, currency=p.currency, unit=p.unit)
                for p in m.prices
            ),
            endpoints=tuple(m.endpoints),
        ),
        version=msg.version,
        updated_at=msg.updated_at,
        deleted=msg.deleted,
        agent_signature=msg.agent_signature or None,
        node_signature=msg.node_signature or None,
    )


def thread_to_proto(thread: Thread) -> coordination_pb2.Thread:
    out = coordination_pb2.Thread(
        id=thread.id,
        name=thread.name,
        creator=thread.creator,
        participants=list(thread.participants),
        strategy=thread.strategy,
        created_at=thread.created_at,
        state=thread.state,
        last_seq=thread.last_seq,
        strategy_options_json=canonical_json(dict(thread.strategy_options)).decode(),
        strategy_state_json=canonical_json(dict(thread.strategy_state)).decode(),
    )
    if thread.session_id is not None:
        out.session_id = thread.session_id
    if thread.summary is not None:
        out.summary = thread.summary
    return out


def entry_to_proto(
    entry: ThreadEntry, message: message_pb2.Message | None = None
) -> coordination_pb2.ThreadEntry:
    """The entry as protobuf; ``message`` is the entry's message already in protobuf, if any."""
    return coordination_pb2.ThreadEntry(
        thread_id=entry.thread_id,
        seq=entry.seq,
        message=message if message is not None else message_to_proto(entry.message),
        recorded_at=entry.recorded_at,
        system=entry.system,
    )


def inbox_to_proto(
    item: InboxEntry, entry: coordination_pb2.ThreadEntry | None = None
) -> coordination_pb2.InboxEntry:
    """The inbox entry as protobuf; ``entry`` is its thread entry already in protobuf, if any."""
    return coordination_pb2.InboxEntry(
        cursor=item.cursor,
        mentioned=item.mentioned,
        entry=entry if entry is not None else entry_to_proto(item.entry),
    )


def wait_to_proto(result: WaitResult) -> coordination_pb2.WaitResponse:
    return coordination_pb2.WaitResponse(
        entries=[inbox_to_proto(i) for i in result.entries],
        cursor=result.cursor,
        timed_out=result.timed_out,
    )


def history_to_proto(page: HistoryPage) -> coordination_pb2.HistoryResponse:
    out = coordination_pb2.HistoryResponse(entries=[entry_to_proto(e) for e in page.entries])
    if page.next_after_seq is not None:
        out.next_after_seq = page.next_after_seq
    return out

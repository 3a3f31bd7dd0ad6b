"""Secure teams from an agent's side: form a team, answer invitations, talk encrypted.

```python
teams = TeamClient(client)
team = await teams.form_team(goal="summarise", roles=(RoleSpec(name="writer",
    capabilities=("write",)),), budget=Money(amount=100), candidates=None, timeout_s=30)
await teams.send_team_message(team.team_id, "hello team")
```

Invitations and answers travel as signed ``team.document`` messages in a
formation thread, so an invitee sees its invitation in its inbox
(``accept_invitations`` answers them). Certificates, key epochs, removals
and the dissolution go straight to ``POST /v1/teams/{id}/documents``. Every
record the node returns is re-verified here with ``verify_team``: the SDK
trusts certificates, not the node.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict

from coral.coordination.model import ThreadEntry
from coral.protocol.agent import AgentRecord
from coral.protocol.errors import CoralError
from coral.protocol.message import DataPart, Message, Part, TextPart, now_ms
from coral.teams import (
    Acceptance,
    Invitation,
    KeyEpoch,
    Money,
    Payout,
    Refusal,
    RoleSpec,
    SignedTeamDocument,
    TeamCharter,
    TeamKey,
    TeamRecord,
    TeamState,
    accept,
    build_team_message,
    certify,
    dissolve,
    draft_charter,
    invite,
    new_key_epoch,
    open_key_epoch,
    parse_team_document,
    parse_team_record,
    read_team_message,
    refuse,
    remove,
    verify_team,
)
from coral.teams.errors import DecryptionFailed, NotAMember
from coral.teams.messages import TEAM_MESSAGE_KIND
from coral_sdk.client import CoralApiError, CoralClient
from coral_sdk.types import DocumentAccepted, Forwarded, TeamProposal, TeamSummary

#: Kind of a message carrying one signed team document (see coral.node.subsystems.teams).
TEAM_DOCUMENT_KIND = "team.document"
#: Kind of the initiator's notice that the team is formed (data: team and thread ids).
TEAM_FORMED_KIND = "team.formed"
#: Longest single long-poll on a team (the node bounds waits to 60 s).
_WAIT_MS = 30_000


class TeamView(BaseModel):
    """``GET /v1/teams/{id}``: the signed record (unverified as parsed), bound threads, revision.

    ``revision`` grows with every document applied and thread bound; pass it
    back as ``after_revision`` to wait for the next change.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    record: TeamRecord
    thread_ids: tuple[str, ...]
    revision: int = 0


class FormationTimedOut(TimeoutError):
    """Not every role was filled in time; the team was dissolved as cancelled."""


@dataclass(frozen=True)
class TeamOffer:
    """What an invitee decides on: the invitation, the charter, and the offered role."""

    invitation: Invitation
    charter: TeamCharter
    role: RoleSpec


#: Returns the price to accept at, or None to refuse (may be async).
Decide = Callable[[TeamOffer], int | Awaitable[int | None] | None]


@dataclass
class FormedTeam:
    """A team as one of its members sees it: ids, members by role, the current key epoch."""

    team_id: str
    thread_id: str
    members: dict[str, str]
    key_epoch: int
    formation_thread_id: str | None = None


@dataclass(frozen=True)
class TeamPost:
    """One decrypted team thread message (``readable`` False when no held key opens it)."""

    seq: int
    sender: str
    parts: tuple[Part, ...]
    readable: bool = True

    @property
    def text(self) -> str:
        """All text parts joined by newlines."""
        return "\n".join(p.text for p in self.parts if isinstance(p, TextPart))


class TeamClient:
    """Team operations for the agent behind ``client``; keeps the team keys it unsealed."""

    def __init__(self, client: CoralClient) -> None:
        self.client = client
        self.keys: dict[str, TeamKey] = {}
        self._threads: dict[str, str] = {}
        self._epochs: dict[str, int] = {}
        # Teams live on their initiator's home node; for a team formed on another
        # node the documents are read and posted there (found through /v1/peers).
        self._homes: dict[str, CoralClient] = {}

    @property
    def did(self) -> str:
        """The agent's did."""
        return self.client.did

    # -- plain calls ------------------------------------------------------------

    async def propose(self, charter: TeamCharter) -> TeamProposal:
        """Propose a team from a charter this agent signed."""
        body = json.dumps(charter.model_dump(mode="json")).encode()
        data = await self.client._request("POST", "/v1/teams", body=body, signed=False)
        return TeamProposal.model_validate(data)

    async def submit_document(self, document: SignedTeamDocument) -> DocumentAccepted:
        """Post one signed document to its team; returns the node's summary of the team."""
        path = f"/v1/teams/{document.team_id}/documents"
        body = json.dumps(document.model_dump(mode="json")).encode()
        home = await self._home(document.team_id)
        data = await home._request("POST", path, body=body, signed=False)
        return DocumentAccepted.model_validate(data)

    async def _home(self, team_id: str) -> CoralClient:
        """The client for the node holding ``team_id``: ours, or a peer that has it."""
        if team_id in self._homes:
            return self._homes[team_id]
        try:
            await self.client._request("GET", f"/v1/teams/{team_id}")
            return self.client
        except CoralApiError as exc:
            if exc.reason != "team_not_found":
                return self.client  # the team is here; the caller sees the real error
        for peer in await self.client.peers():
            url = peer.record.addresses.http
            if not url:
                continue
            remote = CoralClient(url, self.client.identity)
            try:
                await remote._request("GET", f"/v1/teams/{team_id}")
            except (CoralApiError, OSError):
                await remote.close()
                continue
            self._homes[team_id] = remote
            return remote
        raise CoralApiError(404, "team_not_found", f"no known node holds team {team_id}")

    async def close(self) -> None:
        """Close connections opened to other nodes (the agent's own client stays open)."""
        for remote in self._homes.values():
            if remote is not self.client:
                await remote.close()
        self._homes.clear()

    async def post_document(
        self, thread_id: str, document: SignedTeamDocument, mentions: Iterable[str] = ()
    ) -> ThreadEntry | Forwarded:
        """Deliver a document this agent signed as a ``team.document`` message in a thread."""
        message = self.client.build_message(
            kind=TEAM_DOCUMENT_KIND,
            thread=thread_id,
            parts=[DataPart(data=document.model_dump(mode="json"))],
            mentions=mentions,
        )
        return await self.client.submit_to_thread(message)

    async def view(
        self, team_id: str, *, after_revision: int | None = None, wait_ms: int = 0
    ) -> TeamView:
        """The team's record as the node serves it (not yet verified), threads and revision.

        With ``wait_ms`` the node holds the call until the team's revision
        passes ``after_revision`` or ``wait_ms`` passes (a long-poll; at most
        60 s). Cancelling the call closes its connection and changes nothing.

        Raises:
            CoralApiError: the team is unknown, or this agent takes no part in it.
            NodeUnreachable: no node answers.
        """
        home = await self._home(team_id)
        query: dict[str, Any] = {}
        if wait_ms > 0:
            query = {"after_revision": after_revision or 0, "wait_ms": wait_ms}
        data = await home._request("GET", f"/v1/teams/{team_id}", query=query)
        return TeamView(
            record=parse_team_record(data["record"]),
            thread_ids=tuple(data["thread_ids"]),
            revision=data.get("revision", 0),
        )

    async def load(self, team_id: str) -> tuple[TeamRecord, TeamState, list[str]]:
        """The team's signed record, its state as verified here, and its bound thread ids."""
        view = await self.view(team_id)
        return view.record, verify_team(view.record, now_ms()), list(view.thread_ids)

    async def fetch(self, team_id: str) -> tuple[TeamState, list[str]]:
        """The team's verified state and its bound thread ids."""
        _, state, threads = await self.load(team_id)
        return state, threads

    async def record(self, team_id: str) -> TeamRecord:
        """The team's full signed record, verified offline before it is returned."""
        record, _, _ = await self.load(team_id)
        return record

    async def candidates(self, team_id: str) -> dict[str, list[AgentRecord]]:
        """Directory records that could fill each role, cheapest first."""
        path = f"/v1/teams/{team_id}/candidates"
        data = await self.client._request("GET", path)
        return {
            role: [AgentRecord.model_validate(r) for r in records]
            for role, records in data["roles"].items()
        }

    async def teams(self) -> list[TeamSummary]:
        """Summaries of the teams this agent takes part in."""
        query = {"member": self.did}
        data = await self.client._request("GET", "/v1/teams", query=query)
        return [TeamSummary.model_validate(team) for team in data["teams"]]

    # -- forming a team ---------------------------------------------------------

    async def form_team(
        self,
        *,
        goal: str,
        roles: Sequence[RoleSpec],
        budget: Money,
        candidates: Mapping[str, Sequence[str]] | None = None,
        timeout_s: float = 30.0,
        lifetime_s: float = 3600.0,
        empowered_roles: tuple[str, ...] = (),
    ) -> FormedTeam:
        """Propose, invite, certify, key and open the encrypted thread; returns the team.

        ``candidates`` maps role names to dids in order of preference; when None
        the node's directory is matched against the charter. A refusal (or an
        acceptance over budget) moves to the next candidate. If some seat is
        still empty after ``timeout_s`` the team is dissolved as cancelled and
        FormationTimedOut is raised. Between steps it long-polls the team
        (``view`` with ``wait_ms``), so it acts as soon as an invitee answers.
        Cancelling it leaves the team proposed and its invitations out (they
        expire after ``timeout_s``); dissolve the team to release its budget.

        Raises:
            FormationTimedOut: some seat was still empty after ``timeout_s``.
            CoralApiError: the node refused a step (e.g. the budget cannot be held).
            NodeUnreachable: no node answers.
        """
        now = now_ms()
        charter = draft_charter(
            self.client.identity,
            goal=goal,
            roles=tuple(roles),
            budget=budget,
            deadline_ms=now + int(lifetime_s * 1000),
            now_ms=now,
            empowered_roles=empowered_roles,
        )
        await self.propose(charter)
        team_id = charter.team_id
        # Directory records ride along in certificates, so the record proves capabilities.
        records: dict[str, AgentRecord] = {}
        if candidates is None:
            matches = await self.candidates(team_id)
            records = {r.agent: r for found in matches.values() for r in found}
            ranked = {role: [r.agent for r in found] for role, found in matches.items()}
        else:
            ranked = {role: [d for d in dids if d != self.did] for role, dids in candidates.items()}
        local = TeamState(charter, now)
        queues = {role.name: list(ranked.get(role.name, [])) for role in charter.roles}
        first = _first_picks(charter, queues)
        formation = await self.client.create_thread(
            f"formation of {team_id}", [did for did, _ in first]
        )
        formation_id = formation.id
        ttl_ms = max(1, int(timeout_s * 1000))
        pending: dict[str, Invitation] = {}
        for did, role in first:
            pending[did] = await self._invite(local, formation_id, did, role, ttl_ms, add=False)
        deadline = time.monotonic() + timeout_s
        revision: int | None = None
        while True:
            # Long-poll: the node answers as soon as an answer (or any document) lands.
            wait_ms = _remaining_ms(deadline) if revision is not None else 0
            view = await self.view(team_id, after_revision=revision, wait_ms=wait_ms)
            revision = view.revision
            state = verify_team(view.record, now_ms())
            if all(state.role_seats_taken(r.name) >= r.count for r in charter.roles):
                break
            if time.monotonic() >= deadline:
                await self.submit_document(
                    dissolve(state, self.client.identity, now_ms=now_ms(), goal_met=False)
                )
                await self.client.close_thread(formation_id, "team not filled in time")
                raise FormationTimedOut(f"team {team_id} was not filled in {timeout_s}s")
            for did, invitation in list(pending.items()):
                answer = state.answers.get(invitation.content_hash())
                if answer is None:
                    continue
                del pending[did]
                if isinstance(answer, Acceptance) and await self._certify(
                    state, answer, records.get(did)
                ):
                    continue
                nxt = _next_pick(queues, invitation.role, state, pending)
                if nxt is not None:
                    role = invitation.role
                    pending[nxt] = await self._invite(local, formation_id, nxt, role, ttl_ms)
        key_epoch, key = new_key_epoch(state, self.client.identity, now_ms())
        await self.submit_document(key_epoch)
        self.keys[key.key_id] = key
        self._epochs[team_id] = key.epoch
        members = sorted(state.member_dids() - {self.did})
        thread = await self._create_team_thread(team_id, members)
        await self.client.send(
            formation_id,
            data={"team_id": team_id, "thread_id": thread},
            kind=TEAM_FORMED_KIND,
            mentions=members,
        )
        await self.client.close_thread(formation_id, f"team formed; thread {thread}")
        return FormedTeam(
            team_id=team_id,
            thread_id=thread,
            members={did: m.role for did, m in state.current_members(now_ms()).items()},
            key_epoch=key.epoch,
            formation_thread_id=formation_id,
        )

    async def _invite(
        self,
        local: TeamState,
        thread_id: str,
        did: str,
        role: str,
        ttl_ms: int,
        *,
        add: bool = True,
    ) -> Invitation:
        if add:
            try:
                await self.client.add_participant(thread_id, did)
            except CoralApiError as exc:
                if exc.reason != "already_participant":
                    raise
        invitation = invite(
            local,
            self.client.identity,
            invitee=did,
            role=role,
            now_ms=now_ms(),
            ttl_ms=ttl_ms,
        )
        await self.post_document(thread_id, invitation, mentions=[did])
        return invitation

    async def _certify(
        self, state: TeamState, acceptance: Acceptance, record: AgentRecord | None
    ) -> bool:
        """Certify an acceptance; False when the team cannot take it (budget, seats)."""
        certificate = certify(
            state, acceptance, self.client.identity, now_ms=now_ms(), agent_record=record
        )
        try:
            await self.submit_document(certificate)
        except CoralApiError as exc:
            if exc.reason in ("over_budget", "role_full", "already_member"):
                return False
            raise
        return True

    async def _create_team_thread(self, team_id: str, members: list[str]) -> str:
        # The name stays generic: thread metadata is stored in clear.
        args = {
            "name": f"team {team_id}",
            "participants": members,
            "strategy": "broadcast",
            "team_id": team_id,
        }
        message = self.client.build_message(kind="thread.create", parts=[DataPart(data=args)])
        thread_id = (await self.client.submit_thread_create(message)).id
        self._threads[team_id] = thread_id
        return thread_id

    # -- answering invitations --------------------------------------------------

    async def answer_invitation(
        self, message: Message, decide: Decide
    ) -> Acceptance | Refusal | None:
        """Answer the invitation ``message`` carries, if it is one for this agent.

        The invitation is checked against the verified team record; ``decide``
        gets the offer and returns a price (accept) or None (refuse). Returns
        the answer posted, or None when the message was no open invitation.
        """
        if message.kind != TEAM_DOCUMENT_KIND or message.thread is None:
            return None
        payloads = message.data()
        if len(payloads) != 1 or not isinstance(payloads[0], dict):
            return None
        document = parse_team_document(payloads[0])
        if not isinstance(document, Invitation) or document.invitee != self.did:
            return None
        document.verify_signature()
        state, _ = await self.fetch(document.team_id)
        invitation_hash = document.content_hash()
        if invitation_hash not in state.invitations or invitation_hash in state.answers:
            return None
        role = state.charter.role(document.role)
        assert role is not None  # the verified record holds the invitation
        decision = decide(TeamOffer(document, state.charter, role))
        price = await decision if inspect.isawaitable(decision) else decision
        answer: Acceptance | Refusal
        if price is None:
            answer = refuse(document, self.client.identity, now_ms=now_ms())
        else:
            currency = state.charter.budget.currency
            answer = accept(
                document, self.client.identity, price=price, currency=currency, now_ms=now_ms()
            )
        await self.post_document(message.thread, answer, mentions=[document.issuer])
        return answer

    async def join(self, team_id: str, timeout_s: float = 30.0) -> FormedTeam:
        """Wait until this agent holds the team's current key and a team thread exists.

        Long-polls the team record, so it returns as soon as the key epoch and
        the thread are there.

        Raises:
            TimeoutError: the team did not open to this agent within ``timeout_s``.
            NotAMember: the team was keyed without this agent.
            CoralApiError: the node refused the read (e.g. not a party of the team).
        """
        deadline = time.monotonic() + timeout_s
        revision: int | None = None
        while True:
            wait_ms = _remaining_ms(deadline) if revision is not None else 0
            view = await self.view(team_id, after_revision=revision, wait_ms=wait_ms)
            revision = view.revision
            state = self._take_keys(team_id, view)
            thread_id = self._threads.get(team_id)
            if thread_id and self.did in state.key_recipients and not state.rekey_required:
                return FormedTeam(
                    team_id=team_id,
                    thread_id=thread_id,
                    members={d: m.role for d, m in state.current_members(now_ms()).items()},
                    key_epoch=state.key_epoch,
                )
            if self.did not in state.member_dids() and state.key_epoch > 0:
                raise NotAMember(f"{self.did} is not a member of team {team_id}")
            if time.monotonic() >= deadline:
                raise TimeoutError(f"team {team_id} did not open to {self.did} in {timeout_s}s")

    # -- encrypted team threads --------------------------------------------------

    async def _refresh_keys(self, team_id: str) -> TeamState:
        """Unseal every key epoch of the team sealed to this agent (old ones read history)."""
        return self._take_keys(team_id, await self.view(team_id))

    def _take_keys(self, team_id: str, view: TeamView) -> TeamState:
        """Verify the record, unseal its key epochs for this agent, note the team thread."""
        record, threads = view.record, view.thread_ids
        state = verify_team(record, now_ms())
        for document in record.documents:
            if isinstance(document, KeyEpoch) and self.did in document.recipients():
                key_id = f"{team_id}/{document.epoch}"
                if key_id not in self.keys:
                    self.keys[key_id] = open_key_epoch(document, self.client.identity)
        if threads:
            self._threads.setdefault(team_id, threads[0])
        self._epochs[team_id] = state.key_epoch
        return state

    async def _thread_of(self, team_id: str) -> str:
        if team_id not in self._threads or team_id not in self._epochs:
            await self._refresh_keys(team_id)
        if team_id not in self._threads:
            raise NotAMember(f"team {team_id} has no thread yet")
        return self._threads[team_id]

    async def send_team_message(
        self,
        team_id: str,
        text: str | None = None,
        *,
        data: Any = None,
        mentions: Iterable[str] = (),
    ) -> ThreadEntry | Forwarded:
        """Encrypt and post to the team thread under the current key; returns the entry."""
        parts: list[Part] = []
        if text is not None:
            parts.append(TextPart(text=text))
        if data is not None:
            parts.append(DataPart(data=data))
        thread_id = await self._thread_of(team_id)
        try:
            return await self._post_encrypted(team_id, thread_id, tuple(parts), tuple(mentions))
        except CoralApiError as exc:
            if exc.reason not in ("stale_key_epoch", "rekey_required"):
                raise
        # The key rotated since we last looked: pick up the new epoch and try once more.
        await self._refresh_keys(team_id)
        return await self._post_encrypted(team_id, thread_id, tuple(parts), tuple(mentions))

    async def _post_encrypted(
        self, team_id: str, thread_id: str, parts: tuple[Part, ...], mentions: tuple[str, ...]
    ) -> ThreadEntry | Forwarded:
        epoch = self._epochs.get(team_id, 0)
        key = self.keys.get(f"{team_id}/{epoch}")
        if key is None:
            raise NotAMember(f"{self.did} holds no key for epoch {epoch} of {team_id}")
        message = build_team_message(
            key,
            self.client.identity,
            thread=thread_id,
            parts=parts,
            now_ms=now_ms(),
            mentions=mentions,
        )
        # A team thread owned by another node answers with a delivery receipt.
        return await self.client.submit_to_thread(message)

    async def read_team_messages(self, team_id: str, after_seq: int = 0) -> list[TeamPost]:
        """Decrypt the team thread's posts after ``after_seq`` (system entries skipped)."""
        thread_id = await self._thread_of(team_id)
        page = await self.client.history(thread_id, after=after_seq, limit=1000)
        posts: list[TeamPost] = []
        refreshed = False
        for entry in page.entries:
            message = entry.message
            if entry.system or message.kind != TEAM_MESSAGE_KIND:
                continue
            try:
                parts = read_team_message(message, self.keys)
            except DecryptionFailed:
                if refreshed:
                    posts.append(TeamPost(entry.seq, message.sender, (), readable=False))
                    continue
                await self._refresh_keys(team_id)
                refreshed = True
                try:
                    parts = read_team_message(message, self.keys)
                except DecryptionFailed:
                    posts.append(TeamPost(entry.seq, message.sender, (), readable=False))
                    continue
            posts.append(TeamPost(entry.seq, message.sender, parts))
        return posts

    # -- changing and closing a team -------------------------------------------------

    async def remove_member(self, team_id: str, member: str, reason: str = "") -> int:
        """Remove ``member``: sign the removal, drop it from team threads, rotate the key.

        Returns the new key epoch; the removed agent holds no key for it.
        """
        state, threads = await self.fetch(team_id)
        await self.submit_document(
            remove(state, member, self.client.identity, now_ms=now_ms(), reason=reason)
        )
        for thread_id in threads:
            await self.client.remove_participant(thread_id, member)
        state, _ = await self.fetch(team_id)
        key_epoch, key = new_key_epoch(state, self.client.identity, now_ms())
        await self.submit_document(key_epoch)
        self.keys[key.key_id] = key
        self._epochs[team_id] = key.epoch
        return key.epoch

    async def dissolve(
        self, team_id: str, *, goal_met: bool, payouts: tuple[Payout, ...] | None = None
    ) -> DocumentAccepted:
        """Dissolve the team (initiator only) and close its threads."""
        state, threads = await self.fetch(team_id)
        document = dissolve(
            state, self.client.identity, now_ms=now_ms(), goal_met=goal_met, payouts=payouts
        )
        result = await self.submit_document(document)
        for thread_id in threads:
            await self.client.close_thread(thread_id, "team dissolved")
        return result


def _remaining_ms(deadline: float) -> int:
    """Milliseconds to ``deadline`` for one long-poll (at least 1, at most ``_WAIT_MS``)."""
    return max(1, min(_WAIT_MS, int((deadline - time.monotonic()) * 1000)))


def _first_picks(charter: TeamCharter, queues: dict[str, list[str]]) -> list[tuple[str, str]]:
    picked: list[tuple[str, str]] = []
    taken: set[str] = set()
    for role in charter.roles:
        queue = queues[role.name]
        chosen = [did for did in queue if did not in taken][: role.count]
        for did in chosen:
            queue.remove(did)
            taken.add(did)
            picked.append((did, role.name))
    return picked


def _next_pick(
    queues: dict[str, list[str]], role: str, state: TeamState, pending: Mapping[str, Invitation]
) -> str | None:
    queue = queues.get(role, [])
    invited = {inv.invitee for inv in state.invitations.values()}
    while queue:
        did = queue.pop(0)
        if did not in invited and did not in pending and did not in state.member_dids():
            return did
    return None


async def accept_invitations(
    client: CoralClient,
    decide: Decide,
    *,
    stop: asyncio.Event | None = None,
    after: int = 0,
    limit: int | None = None,
) -> list[Acceptance | Refusal]:
    """Answer invitations arriving in this agent's inbox until ``stop`` is set.

    Returns the answers posted. ``limit`` stops after that many answers;
    invitations already answered or no longer open are skipped.
    """
    teams = TeamClient(client)
    answers: list[Acceptance | Refusal] = []
    cursor = after
    while (stop is None or not stop.is_set()) and (limit is None or len(answers) < limit):
        result = await client.wait("mention", after=cursor, timeout_ms=1000)
        for item in result.entries:
            message = item.entry.message
            try:
                answer = await teams.answer_invitation(message, decide)
            except (CoralApiError, CoralError):
                # Expired or withdrawn meanwhile, or not a well-formed invitation: skip it.
                answer = None
            if answer is not None:
                answers.append(answer)
        cursor = result.cursor
    return answers

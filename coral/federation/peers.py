"""Who a node gossips with: a bounded active set drawn from the known set, and peer scores.

A node knows (holds records for) many peers but keeps only ``max_active``
connections. Targets for a round are drawn at random from the active set, and
one active peer is swapped for a random known one per round, which keeps the
overlay a random graph (good expansion, so gossip spreads in O(log N) rounds).
Peers that send bad signatures or floods lose score; below the threshold they
are banned for ``ban_ms`` and dropped from the active set.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from coral.federation.errors import PeerBanned


@dataclass(frozen=True, slots=True)
class ScoringPolicy:
    """How peers gain and lose standing; scores are clamped to ``[-inf, max_score]``."""

    bad_record_penalty: float = 10.0
    flood_penalty: float = 50.0
    accepted_reward: float = 0.1
    max_score: float = 50.0
    ban_threshold: float = -100.0
    ban_ms: int = 10 * 60 * 1000
    window_ms: int = 10_000
    #: Records one peer may send per window; a full directory sync of a large
    #: network fits comfortably, a flood does not.
    max_records_per_window: int = 50_000


class PeerScores:
    """Per-peer score, traffic window and ban state; time is passed in."""

    def __init__(self, policy: ScoringPolicy | None = None) -> None:
        self.policy = policy or ScoringPolicy()
        self._score: dict[str, float] = {}
        self._banned_until: dict[str, int] = {}
        self._window: dict[str, tuple[int, int]] = {}

    def score(self, peer: str) -> float:
        """The peer's current score (0 for a peer never seen)."""
        return self._score.get(peer, 0.0)

    def is_banned(self, peer: str, now_ms: int) -> bool:
        """True while the peer's ban lasts; a lapsed ban is lifted with a fresh score."""
        until = self._banned_until.get(peer)
        if until is None:
            return False
        if now_ms < until:
            return True
        del self._banned_until[peer]
        self._score[peer] = 0.0
        return False

    def check(self, peer: str, now_ms: int) -> None:
        """Raise PeerBanned while the peer is banned."""
        if self.is_banned(peer, now_ms):
            raise PeerBanned(f"peer {peer} is banned for {self._banned_until[peer] - now_ms} ms")

    def penalize(self, peer: str, amount: float, now_ms: int) -> bool:
        """Lower the score; returns True when this pushes the peer into a ban."""
        score = self._score.get(peer, 0.0) - amount
        self._score[peer] = score
        if score <= self.policy.ban_threshold and peer not in self._banned_until:
            self._banned_until[peer] = now_ms + self.policy.ban_ms
            return True
        return False

    def reward(self, peer: str, amount: float) -> None:
        """Raise the score (capped), so one glitch does not ban a long-good peer."""
        self._score[peer] = min(self.policy.max_score, self._score.get(peer, 0.0) + amount)

    def admit(self, peer: str, count: int, now_ms: int) -> int:
        """Count ``count`` records against the peer's window; return how many are allowed.

        Going over the allowance costs ``flood_penalty`` once per offending batch.
        """
        start, used = self._window.get(peer, (now_ms, 0))
        if now_ms - start >= self.policy.window_ms:
            start, used = now_ms, 0
        allowed = max(0, min(count, self.policy.max_records_per_window - used))
        self._window[peer] = (start, used + count)
        if allowed < count:
            self.penalize(peer, self.policy.flood_penalty, now_ms)
        return allowed


class PeerSet:
    """The bounded set of peers this node actively gossips with."""

    def __init__(self, self_did: str, max_active: int = 32) -> None:
        self.self_did = self_did
        self.max_active = max_active
        # A dict keeps insertion order, so a seeded RNG gives a reproducible run.
        self._active: dict[str, None] = {}

    @property
    def active(self) -> list[str]:
        """The active peers, in the order they joined."""
        return list(self._active)

    def add(self, peer: str) -> bool:
        """Activate a peer (a bootstrap peer, say) if there is room; True when added."""
        if peer == self.self_did or peer in self._active or len(self._active) >= self.max_active:
            return False
        self._active[peer] = None
        return True

    def drop(self, peer: str) -> None:
        """Deactivate a peer (banned, unreachable, or forgotten)."""
        self._active.pop(peer, None)

    def refresh(
        self, known: Sequence[str], rng: random.Random, is_banned: Callable[[str], bool]
    ) -> None:
        """Drop banned peers, swap one active peer for a random known one, fill up to the bound."""
        for peer in [p for p in self._active if is_banned(p)]:
            self.drop(peer)
        if not known:
            return
        if len(self._active) >= self.max_active:
            self.drop(rng.choice(list(self._active)))
        # Sampling a few candidates at a time avoids copying the known set per slot.
        attempts = 0
        while len(self._active) < self.max_active and attempts < 4 * self.max_active:
            attempts += 1
            candidate = known[rng.randrange(len(known))]
            if not is_banned(candidate):
                self.add(candidate)
            if len(self._active) >= len(known):
                break

    def choose(self, rng: random.Random, fanout: int) -> list[str]:
        """Pick up to ``fanout`` distinct active peers at random for this round."""
        active = list(self._active)
        return rng.sample(active, min(fanout, len(active)))

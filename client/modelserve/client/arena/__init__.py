"""The client's side of the gateway's arena (docs/arena.md): battles streamed side by side
as typed events, their turns, votes and leaderboards as calls and typed answers, and the
CLI's `modelserve arena …` commands (docs/client.md)."""

from modelserve.client.arena.answers import (
    ArenaBattle,
    ArenaBattles,
    ArenaTurn,
    ArenaVote,
    ArenaVotes,
    BattleEvent,
    Leaderboard,
    Standing,
)

__all__ = [
    "ArenaBattle",
    "ArenaBattles",
    "ArenaTurn",
    "ArenaVote",
    "ArenaVotes",
    "BattleEvent",
    "Leaderboard",
    "Standing",
]

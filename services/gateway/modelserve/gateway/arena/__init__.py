"""The arena: two anonymous models answer the same prompt side by side, the caller votes,
and the votes become a leaderboard (Bradley-Terry ratings with bootstrap intervals, the
online Elo beside them). See docs/arena.md."""

// Arena: two anonymous models answer the same prompt side by side; the vote reveals them
// and feeds the leaderboard below (docs/arena.md). `#/arena/<team>` opens that team's board.

import { useState } from "react";
import { useSession } from "../session";
import { Battle } from "./arena/Battle";
import { Leaderboard } from "./arena/Leaderboard";
import "./pages-arena-playground.css";

export function Arena({ route }: { route: string[] }) {
  const { user } = useSession();
  const [votes, setVotes] = useState(0);
  return (
    <>
      <section className="arena-section" aria-labelledby="arena-battle">
        <h2 id="arena-battle">Battle</h2>
        <p className="muted">
          Two models drawn at random answer without their names. Go on for more turns if you like, then
          vote: the vote reveals them.
        </p>
        <Battle onVoted={() => setVotes((n) => n + 1)} />
      </section>
      <section className="arena-section" aria-labelledby="arena-board">
        <h2 id="arena-board">Leaderboard</h2>
        <Leaderboard teams={user?.teams ?? []} initialTeam={route[0] ?? ""} version={votes} />
      </section>
    </>
  );
}

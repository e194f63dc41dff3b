// The vote on a battle (POST /arena/battles/{id}/vote) and what it revealed.

import { useState } from "react";
import { api, messageOf } from "../../api";
import { ErrorNote } from "../../components/Load";
import { useSession } from "../../session";
import type { VoteResult } from "./battle";

const CHOICES = [
  { vote: "a", label: "A is better" },
  { vote: "b", label: "B is better" },
  { vote: "tie", label: "Tie" },
  { vote: "both_bad", label: "Both are bad" },
] as const;

export function VoteBar({ battle, onVoted }: { battle: string; onVoted: (result: VoteResult) => void }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);

  async function vote(choice: string) {
    setBusy(true);
    setError(null);
    try {
      onVoted(await api<VoteResult>(`/arena/battles/${encodeURIComponent(battle)}/vote`, { body: { vote: choice } }));
    } catch (failure) {
      setError(messageOf(failure));
    } finally {
      setBusy(false);
    }
  }

  return (
    <fieldset className="arena-vote">
      <legend>Which answer is better? Voting reveals the models and closes the battle.</legend>
      {CHOICES.map((choice) => (
        <button key={choice.vote} type="button" disabled={busy} onClick={() => vote(choice.vote)}>
          {choice.label}
        </button>
      ))}
      <ErrorNote error={error} />
    </fieldset>
  );
}

const VOTED: Record<string, string> = {
  a: "A is better",
  b: "B is better",
  tie: "a tie",
  both_bad: "both are bad",
};

function fed(result: VoteResult, withTeams: boolean): string {
  if (!result.counts) return `Your vote is kept but does not count: ${whyNot(result)}.`;
  if (result.scope === "global") {
    return `Your vote counts on the global leaderboard${withTeams ? ", and on your teams' boards" : ""}.`;
  }
  if (result.scope === "team" && result.team) return `Your vote counts on the leaderboard of the team ${result.team}.`;
  return "Your vote is kept but feeds no leaderboard: the battle had a model of one person's own, or models of two teams.";
}

function whyNot(result: VoteResult): string {
  if (result.excluded_because === "models_chosen") return "the models were named, not drawn";
  if (result.excluded_because === "identity_revealed") {
    const terms = result.revealed.map((found) => `Model ${found.side.toUpperCase()} wrote “${found.term}”`);
    return `an answer named a model (${terms.join("; ")})`;
  }
  return result.excluded_because ?? "the platform did not say why";
}

export function VoteOutcome({ result }: { result: VoteResult }) {
  const { user } = useSession();
  return (
    <div className="notice arena-outcome" role="status">
      <p>
        You voted {VOTED[result.vote] ?? result.vote}. Model A was <strong>{result.models.a}</strong>, Model B
        was <strong>{result.models.b}</strong>.
      </p>
      <p>
        {fed(result, (user?.teams.length ?? 0) > 0)}
      </p>
    </div>
  );
}

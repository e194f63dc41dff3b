// The arena's leaderboard (GET /arena/leaderboard): Bradley-Terry ratings with their
// 95% bootstrap intervals, votes, win rates, ranks and the online Elo; global or a team's.

import { useState } from "react";
import { api } from "../../api";
import { ErrorNote, Loading, useLoad } from "../../components/Load";

interface Standing {
  rank: number;
  model: string;
  rating: number;
  ci: { lower: number; upper: number } | null;
  votes: number;
  wins: number;
  losses: number;
  ties: number;
  win_rate: number;
  elo: number;
}

interface Board {
  scope: string;
  team: string | null;
  votes: number;
  excluded: Record<string, number>;
  bootstrap_rounds: number;
  style_control: boolean;
  style_coefficients: Record<string, number> | null;
  models: Standing[];
}

const REASONS: Record<string, string> = {
  models_chosen: "the models were named",
  identity_revealed: "an answer named a model",
};

interface Props {
  teams: string[];
  initialTeam: string;
  version: number; // changes after a vote: load the board again
}

export function Leaderboard({ teams, initialTeam, version }: Props) {
  const [team, setTeam] = useState(teams.includes(initialTeam) ? initialTeam : "");
  const [style, setStyle] = useState(false);
  const board = useLoad(
    (signal) =>
      api<Board>("/arena/leaderboard", { query: { team: team || null, style_control: style || null }, signal }),
    [team, style, version],
  );

  return (
    <>
      <form className="inline" aria-label="Which leaderboard" onSubmit={(e) => e.preventDefault()}>
        <label>
          Board
          <select value={team} onChange={(e) => setTeam(e.target.value)}>
            <option value="">Global (the platform's models)</option>
            {teams.map((name) => (
              <option key={name} value={name}>
                Team {name}
              </option>
            ))}
          </select>
        </label>
        <label className="ap-check">
          <input type="checkbox" checked={style} onChange={(e) => setStyle(e.target.checked)} />
          Style control (length and markdown accounted for)
        </label>
      </form>
      <ErrorNote error={board.error} />
      <Loading loading={board.loading}>Loading the leaderboard…</Loading>
      {board.data && <BoardTable board={board.data} />}
    </>
  );
}

function BoardTable({ board }: { board: Board }) {
  const excluded = Object.entries(board.excluded);
  const intervals = board.models.flatMap((m) => (m.ci ? [m.ci.lower, m.ci.upper] : [m.rating]));
  const low = Math.min(...intervals);
  const high = Math.max(...intervals);
  return (
    <>
      <p>
        {board.votes} counted {board.votes === 1 ? "vote" : "votes"}
        {excluded.length > 0 &&
          `; excluded: ${excluded.map(([why, n]) => `${n} (${REASONS[why] ?? why})`).join(", ")}`}
        .{" "}
        <span className="muted">
          {board.bootstrap_rounds > 0
            ? `Intervals from ${board.bootstrap_rounds} bootstrap resamples.`
            : "No intervals (no resamples)."}
        </span>
      </p>
      {board.style_coefficients && (
        <p className="muted">
          Style weights (positive: voters prefer more of it):{" "}
          {Object.entries(board.style_coefficients)
            .map(([name, weight]) => `${name} ${weight.toFixed(3)}`)
            .join(", ")}
        </p>
      )}
      <div className="arena-table">
        <table>
          <caption>
            {board.team ? `Leaderboard of the team ${board.team}` : "Global leaderboard"}
            {board.style_control ? ", with style control" : ""}
          </caption>
          <thead>
            <tr>
              <th scope="col">Rank</th>
              <th scope="col">Model</th>
              <th scope="col">Rating</th>
              <th scope="col">95% interval</th>
              <th scope="col">Votes</th>
              <th scope="col">Win rate</th>
              <th scope="col">Elo</th>
            </tr>
          </thead>
          <tbody>
            {board.models.length === 0 && (
              <tr>
                <td colSpan={7}>No counted votes on this board yet.</td>
              </tr>
            )}
            {board.models.map((m) => (
              <tr key={m.model}>
                <td>{m.rank}</td>
                <th scope="row">{m.model}</th>
                <td>{m.rating.toFixed(1)}</td>
                <td>
                  {m.ci ? (
                    <span className="arena-ci">
                      <span className="arena-ci-text">
                        {m.ci.lower.toFixed(1)}–{m.ci.upper.toFixed(1)}
                      </span>
                      <IntervalBar lower={m.ci.lower} upper={m.ci.upper} rating={m.rating} low={low} high={high} />
                    </span>
                  ) : (
                    "—"
                  )}
                </td>
                <td>
                  {m.votes}
                  <div className="muted">
                    {m.wins} won, {m.losses} lost, {m.ties} tied
                  </div>
                </td>
                <td>{(m.win_rate * 100).toFixed(1)}%</td>
                <td>{m.elo.toFixed(1)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </>
  );
}

const WIDTH = 120;
const HEIGHT = 14;
const PAD = 4;

// The interval as a bar on the scale shared by every row, the rating as a dot.
function IntervalBar(props: { lower: number; upper: number; rating: number; low: number; high: number }) {
  const span = props.high - props.low;
  const x = (value: number) => (span > 0 ? PAD + ((value - props.low) / span) * (WIDTH - 2 * PAD) : WIDTH / 2);
  return (
    <svg
      className="arena-bar"
      width={WIDTH}
      height={HEIGHT}
      viewBox={`0 0 ${WIDTH} ${HEIGHT}`}
      aria-hidden="true"
      focusable="false"
    >
      <line className="arena-bar-axis" x1={0} x2={WIDTH} y1={HEIGHT / 2} y2={HEIGHT / 2} />
      <line className="arena-bar-ci" x1={x(props.lower)} x2={x(props.upper)} y1={HEIGHT / 2} y2={HEIGHT / 2} />
      <circle className="arena-bar-rating" cx={x(props.rating)} cy={HEIGHT / 2} r={3} />
    </svg>
  );
}

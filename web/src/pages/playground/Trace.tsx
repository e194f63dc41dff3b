// A scaled answer's trace (docs/scaling.md): the algorithm, the budget, every candidate
// with its score, and which one was chosen.

import type { Trace } from "./chunks";

function seconds(value: number | null): string {
  return value === null ? "—" : `${value.toFixed(2)} s`;
}

export function TraceDetails({ trace }: { trace: Trace }) {
  const chosen = trace.selected;
  const withAnswers = trace.candidates.some((c) => c.answer !== null);
  const withSteps = trace.candidates.some((c) => c.steps > 0);
  return (
    <details className="pg-trace">
      <summary>
        Scaling: {trace.algorithm}, budget {trace.budget ?? "?"}
        {chosen !== null && `, candidate ${chosen + 1} of ${trace.candidates.length} chosen`}
      </summary>
      <p className="muted">
        Reward: {trace.reward ?? "none (a vote on the final answers)"}; rounds: {trace.rounds ?? "—"}; upstream
        calls: {trace.calls ?? "—"}; generating {seconds(trace.generationSeconds)}, scoring{" "}
        {seconds(trace.rewardSeconds)}.
      </p>
      <div className="pg-trace-table">
        <table>
          <caption>Candidates</caption>
          <thead>
            <tr>
              <th scope="col">Candidate</th>
              <th scope="col">Score</th>
              {withAnswers && <th scope="col">Final answer</th>}
              {withSteps && <th scope="col">Steps</th>}
              <th scope="col">Finish</th>
              <th scope="col">Text</th>
            </tr>
          </thead>
          <tbody>
            {trace.candidates.map((c, i) => (
              <tr key={c.index} className={i === chosen ? "pg-chosen" : undefined}>
                <th scope="row">
                  {c.index + 1}
                  {i === chosen && <strong> (chosen)</strong>}
                </th>
                <td>{c.score === null ? "—" : c.score.toFixed(4)}</td>
                {withAnswers && <td>{c.answer ?? "—"}</td>}
                {withSteps && <td>{c.steps}</td>}
                <td>{c.finish ?? "—"}</td>
                <td className="pg-candidate">{c.text}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </details>
  );
}

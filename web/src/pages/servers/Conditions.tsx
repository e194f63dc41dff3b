// A server's status.conditions, as the operator wrote them.

import type { Condition } from "./types";
import { when } from "./types";

export function Conditions({ conditions }: { conditions: Condition[] }) {
  return (
    <section aria-labelledby="sv-conditions-title">
      <h3 id="sv-conditions-title">Conditions</h3>
      {conditions.length === 0 ? (
        <p className="muted">None yet: the operator has not reported on it.</p>
      ) : (
        <div className="sv-scroll">
          <table>
            <thead>
              <tr>
                <th scope="col">Type</th>
                <th scope="col">Status</th>
                <th scope="col">Reason</th>
                <th scope="col">Message</th>
                <th scope="col">Since</th>
              </tr>
            </thead>
            <tbody>
              {conditions.map((condition) => (
                <tr key={condition.type}>
                  <th scope="row">{condition.type}</th>
                  <td className={`sv-cond sv-cond-${condition.status.toLowerCase()}`}>
                    {condition.status}
                  </td>
                  <td>{condition.reason || "—"}</td>
                  <td className="sv-message">{condition.message || "—"}</td>
                  <td>{when(condition.last_transition_time)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

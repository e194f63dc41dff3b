// An answer as its tokens, each showing its log-probability and the top alternatives:
// in its title on hover, and in a panel below for the token hovered or focused. The
// tokens are one stop for Tab; the arrow keys, Home and End move between them.

import { useId, useRef, useState } from "react";
import type { KeyboardEvent } from "react";
import type { Alternative, Token } from "./chunks";

function shown(token: string): string {
  return JSON.stringify(token); // whitespace and newlines made visible
}

function probability(logprob: number): string {
  return `${(Math.exp(logprob) * 100).toFixed(1)}%`;
}

function one(alt: Alternative): string {
  return `${shown(alt.token)} ${alt.logprob.toFixed(3)} (${probability(alt.logprob)})`;
}

export function describe(token: Token): string {
  const alternatives = token.top.filter((alt) => alt.token !== token.token);
  const rest = alternatives.length > 0 ? ` Alternatives: ${alternatives.map(one).join(", ")}.` : "";
  return `${shown(token.token)}: logprob ${token.logprob.toFixed(3)} (p ${probability(token.logprob)}).${rest}`;
}

function shade(logprob: number): string {
  const p = Math.exp(logprob);
  if (p >= 0.9) return "pg-token";
  if (p >= 0.5) return "pg-token pg-p50";
  if (p >= 0.2) return "pg-token pg-p20";
  return "pg-token pg-p0";
}

const MOVES: Record<string, (at: number, last: number) => number> = {
  ArrowRight: (at, last) => Math.min(at + 1, last),
  ArrowDown: (at, last) => Math.min(at + 1, last),
  ArrowLeft: (at) => Math.max(at - 1, 0),
  ArrowUp: (at) => Math.max(at - 1, 0),
  Home: () => 0,
  End: (_, last) => last,
};

const HOW = "Hover over a token, or focus it (Tab, then the arrow keys), to see its log-probability and the alternatives.";

export function Tokens({ tokens, streaming }: { tokens: Token[]; streaming: boolean }) {
  const panel = useId();
  const [focus, setFocus] = useState(0); // the token that Tab reaches
  const [shownAt, setShownAt] = useState<number | null>(null);
  const spans = useRef<(HTMLSpanElement | null)[]>([]);
  const current = shownAt === null ? undefined : tokens[shownAt];

  function move(event: KeyboardEvent) {
    const step = MOVES[event.key];
    if (!step) return;
    event.preventDefault();
    const next = step(focus, tokens.length - 1);
    setFocus(next);
    spans.current[next]?.focus();
  }

  return (
    <>
      <div
        className="pg-text pg-tokens"
        onKeyDown={move}
        role="group"
        aria-label="The answer's tokens (arrow keys move between them)"
        aria-live="polite"
        aria-busy={streaming}
      >
        {tokens.map((token, index) => (
          <span
            key={index}
            ref={(node) => {
              spans.current[index] = node;
            }}
            className={shade(token.logprob)}
            title={describe(token)}
            tabIndex={index === Math.min(focus, tokens.length - 1) ? 0 : -1}
            aria-describedby={panel}
            onFocus={() => {
              setFocus(index);
              setShownAt(index);
            }}
            onMouseEnter={() => setShownAt(index)}
          >
            {token.token}
          </span>
        ))}
      </div>
      <p id={panel} className="pg-token-panel" aria-live="polite">
        {current ? describe(current) : HOW}
      </p>
    </>
  );
}

// Previous / Next over a list paginated by the server, with "x–y of N".

import { useEffect } from "react";

interface PagerProps {
  label: string; // what is paged, for the navigation's name
  offset: number;
  limit: number;
  total: number;
  shown: number; // rows on this page
  onOffset: (offset: number) => void;
}

export function Pager({ label, offset, limit, total, shown, onOffset }: PagerProps) {
  // A page emptied under it (its last rows stopped, revoked or deleted) moves to the last
  // page that has rows.
  const stranded = shown === 0 && offset > 0 && total > 0;
  useEffect(() => {
    if (stranded) onOffset(Math.floor((total - 1) / limit) * limit);
  }, [stranded, total, limit, onOffset]);
  const first = offset + 1;
  const last = offset + shown;
  return (
    <nav className="pager" aria-label={`Pages of ${label}`}>
      <button type="button" disabled={offset <= 0} onClick={() => onOffset(Math.max(0, offset - limit))}>
        Previous <span className="visually-hidden">page of {label}</span>
      </button>
      <span aria-live="polite">{shown === 0 ? `0 of ${total}` : `${first}–${last} of ${total}`}</span>
      <button type="button" disabled={offset + limit >= total} onClick={() => onOffset(offset + limit)}>
        Next <span className="visually-hidden">page of {label}</span>
      </button>
    </nav>
  );
}

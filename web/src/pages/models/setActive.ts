// Making a version its name's active one (POST /models/set_active), with a reason the
// user gives (kept in the history). null: the user changed their mind.

import { api } from "../../api";
import type { Activation } from "./types";

export async function setActive(id: string, question: string): Promise<Activation | null> {
  const reason = window.prompt(`${question}\nReason (kept in the history; may be empty):`, "");
  if (reason === null) return null;
  const body: Record<string, unknown> = { id };
  if (reason.trim()) body.reason = reason.trim();
  return api<Activation>("/models/set_active", { body });
}

// GET /users and GET /teams, as the gateway's accounts.py defines them (UserPublic,
// TeamPublic), and the rules it checks names and passwords by.

export interface UserRecord {
  username: string;
  role: "admin" | "user";
  teams: string[]; // in joining order: the first is the user's default team
  disabled: boolean;
  created_at: string;
}

export interface TeamRecord {
  name: string;
  members: string[];
  created_at: string;
}

export const ROLES = ["user", "admin"] as const;

// accounts.py's NAME_PATTERN (a Kubernetes label value), as an HTML pattern.
export const NAME_PATTERN = "[a-z0-9]([a-z0-9._\\-]{0,61}[a-z0-9])?";
export const NAME_HINT =
  "Lower-case letters, digits, '.', '_' and '-', at most 63, starting and ending with a letter or digit.";
export const MIN_PASSWORD = 8;
export const MAX_PASSWORD = 1024;

// What docs/api.md and docs/gateway.md say a change revokes.
export const REVOKES =
  "their tokens, and their API keys' claims, stop working on every service within 2 s (JWT_REVOCATION_SECONDS): they sign in again";

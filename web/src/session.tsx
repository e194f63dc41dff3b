// Who is signed in. The access token lives in this tab's sessionStorage only (never
// localStorage), with its expiry: it is dropped when it expires, on sign-out, on a 401,
// and when the tab closes. Signing in again is the way to go on (no refresh token).

import { createContext, useCallback, useContext, useEffect, useMemo, useState } from "react";
import type { ReactNode } from "react";
import { api, setBearer } from "./api";

export interface User {
  username: string;
  roles: string[];
  teams: string[];
}

interface Stored {
  token: string;
  expiresAt: number; // ms since the epoch
  user: User;
}

interface Session {
  user: User | null;
  isAdmin: boolean;
  notice: string | null; // why the last session ended, if it did by itself
  signIn: (username: string, password: string) => Promise<void>;
  signOut: (notice?: string) => void;
}

const KEY = "modelserve.session";
const SessionContext = createContext<Session | null>(null);

// The session this tab kept, if it is still valid; else null, and why it ended.
function load(): { stored: Stored | null; notice: string | null } {
  const text = sessionStorage.getItem(KEY);
  if (!text) return { stored: null, notice: null };
  let notice: string | null = null;
  try {
    const stored = JSON.parse(text) as Stored;
    if (stored.expiresAt > Date.now()) return { stored, notice: null };
    notice = "Your session expired. Sign in again.";
  } catch {
    // A damaged entry: as if signed out.
  }
  sessionStorage.removeItem(KEY);
  return { stored: null, notice };
}

export function SessionProvider({ children }: { children: ReactNode }) {
  const [initial] = useState(load);
  const [stored, setStored] = useState<Stored | null>(() => {
    setBearer(initial.stored?.token ?? null, null);
    return initial.stored;
  });
  const [notice, setNotice] = useState<string | null>(initial.notice);

  const signOut = useCallback((why?: string) => {
    sessionStorage.removeItem(KEY);
    setBearer(null, null);
    setStored(null);
    setNotice(why ?? null);
  }, []);

  useEffect(() => {
    if (!stored) return;
    setBearer(stored.token, () => signOut("Your session has ended. Sign in again."));
    const left = stored.expiresAt - Date.now();
    const timer = window.setTimeout(
      () => signOut("Your session expired. Sign in again."),
      Math.max(0, left),
    );
    return () => window.clearTimeout(timer);
  }, [stored, signOut]);

  const signIn = useCallback(async (username: string, password: string) => {
    const answer = await api<{ access_token: string; expires_in: number }>("/auth/token", {
      body: { username, password },
    });
    setBearer(answer.access_token, null);
    try {
      const me = await api<User>("/auth/me");
      const next: Stored = {
        token: answer.access_token,
        expiresAt: Date.now() + answer.expires_in * 1000,
        user: { username: me.username, roles: me.roles, teams: me.teams },
      };
      sessionStorage.setItem(KEY, JSON.stringify(next));
      setNotice(null);
      setStored(next);
    } catch (error) {
      setBearer(null, null);
      throw error;
    }
  }, []);

  const value = useMemo<Session>(
    () => ({
      user: stored?.user ?? null,
      isAdmin: stored?.user.roles.includes("admin") ?? false,
      notice,
      signIn,
      signOut,
    }),
    [stored, notice, signIn, signOut],
  );
  return <SessionContext.Provider value={value}>{children}</SessionContext.Provider>;
}

export function useSession(): Session {
  const session = useContext(SessionContext);
  if (!session) throw new Error("useSession outside SessionProvider");
  return session;
}

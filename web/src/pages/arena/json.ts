// Narrowing the platform's JSON (parsed as `unknown`) without trusting its shape.

export type Json = Record<string, unknown>;

export function isRecord(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

export function text(value: unknown): string | null {
  return typeof value === "string" ? value : null;
}

export function num(value: unknown): number | null {
  return typeof value === "number" && Number.isFinite(value) ? value : null;
}

export function list(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [];
}

// An error inside a stream ({"error": {"message"}} or {"error": "…"}), in words.
export function streamError(value: Json): string | null {
  const error = value.error;
  if (isRecord(error)) return text(error.message) ?? text(error.code) ?? "The answer failed.";
  return text(error);
}

// The platform's API as the signed-in user: JSON in and out, errors in words.
//
// Every call goes to the gateway that serves this page (same origin), with the session's
// bearer token. An error answer of any service shape becomes an ApiError whose message is
// what the platform said ({"error": {"message"}}, FastAPI's {"detail"}, or the status).

export class ApiError extends Error {
  readonly status: number;
  readonly code: string;

  constructor(status: number, code: string, message: string) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

type Query = Record<string, string | number | boolean | null | undefined>;

export interface Request {
  method?: string;
  body?: unknown;
  query?: Query;
  signal?: AbortSignal;
}

// Set by the session: the token to send, and what to do when the platform says it is
// no longer valid (401).
let bearer: string | null = null;
let onUnauthorized: (() => void) | null = null;

export function setBearer(token: string | null, unauthorized: (() => void) | null): void {
  bearer = token;
  onUnauthorized = unauthorized;
}

export function withQuery(path: string, query?: Query): string {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== null && value !== undefined && value !== "") params.set(key, String(value));
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

export async function errorOf(response: Response): Promise<ApiError> {
  let code = `http_${response.status}`;
  let message = `${response.status} ${response.statusText || "error"}`;
  try {
    const body: unknown = await response.json();
    if (body && typeof body === "object") {
      const error = (body as { error?: unknown }).error;
      const detail = (body as { detail?: unknown }).detail;
      if (error && typeof error === "object") {
        const found = error as { message?: unknown; code?: unknown };
        if (typeof found.message === "string") message = found.message;
        if (typeof found.code === "string") code = found.code;
      } else if (typeof detail === "string") {
        message = detail;
      } else if (Array.isArray(detail)) {
        message = detail
          .map((item: { loc?: unknown[]; msg?: string }) =>
            `${(item.loc ?? []).slice(1).join(".")}: ${item.msg ?? ""}`.trim(),
          )
          .join("; ");
      }
    }
  } catch {
    // Not JSON: the status says it.
  }
  return new ApiError(response.status, code, message);
}

export async function send(path: string, request: Request = {}): Promise<Response> {
  const headers: Record<string, string> = {};
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  let body: BodyInit | undefined;
  if (request.body instanceof FormData) {
    body = request.body;
  } else if (request.body !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(request.body);
  }
  let response: Response;
  try {
    response = await fetch(withQuery(path, request.query), {
      method: request.method ?? (body === undefined ? "GET" : "POST"),
      headers,
      body,
      signal: request.signal,
    });
  } catch (error) {
    if (error instanceof DOMException && error.name === "AbortError") throw error;
    throw new ApiError(0, "unreachable", "The platform cannot be reached. Check your connection.");
  }
  if (response.status === 401 && bearer && onUnauthorized) onUnauthorized();
  if (!response.ok) throw await errorOf(response);
  return response;
}

export async function api<T>(path: string, request: Request = {}): Promise<T> {
  const response = await send(path, request);
  if (response.status === 204) return undefined as T;
  return (await response.json()) as T;
}

// Server-sent events of a streamed answer, each `data:` line's JSON (until [DONE]).
export async function* events(response: Response): AsyncGenerator<unknown> {
  if (!response.body) return;
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let end = buffer.indexOf("\n\n");
    while (end >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of block.split("\n")) {
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (data === "[DONE]") return;
        yield JSON.parse(data);
      }
      end = buffer.indexOf("\n\n");
    }
  }
}

export function messageOf(error: unknown): string {
  if (error instanceof ApiError) return error.message;
  if (error instanceof Error) return error.message;
  return String(error);
}

// Playground: a streamed chat with one model (POST /v1/chat/completions, stream: true),
// with max_tokens, temperature, inference-time scaling (its trace after the answer) and
// token logprobs shown per token. `#/playground/<model>` chooses that model.

import { useEffect, useId, useRef, useState } from "react";
import type { FormEvent, KeyboardEvent } from "react";
import { api, events, messageOf, send } from "../api";
import { ErrorNote, Loading, useLoad } from "../components/Load";
import { isRecord, list, text } from "./arena/json";
import { pieceOf } from "./playground/chunks";
import type { Token, Trace } from "./playground/chunks";
import { Settings, scaled } from "./playground/Settings";
import type { Model, Params } from "./playground/Settings";
import { Tokens } from "./playground/Tokens";
import { TraceDetails } from "./playground/Trace";
import "./pages-arena-playground.css";

interface Message {
  role: "user" | "assistant";
  content: string;
  model?: string;
  tokens: Token[];
  trace: Trace | null;
  finish: string | null;
  stopped: boolean;
  error: string | null;
  waitNote?: string; // what the answer waits for before its first text
  askedLogprobs: boolean;
}

const BLANK: Message = {
  role: "user",
  content: "",
  tokens: [],
  trace: null,
  finish: null,
  stopped: false,
  error: null,
  askedLogprobs: false,
};

async function loadModels(signal: AbortSignal): Promise<Model[]> {
  const answer = await api<unknown>("/v1/models", { signal });
  const data = isRecord(answer) ? list(answer.data) : [];
  return data.flatMap((item) => {
    const id = isRecord(item) ? text(item.id) : null;
    return id !== null && isRecord(item) ? [{ id, state: text(item.state) }] : [];
  });
}

function preferred(models: Model[], wanted: string | undefined): string {
  if (wanted && models.some((m) => m.id === wanted)) return wanted;
  return (models.find((m) => m.state === "loaded") ?? models[0])?.id ?? "";
}

function bodyOf(params: Params, history: Message[]): Record<string, unknown> {
  const body: Record<string, unknown> = {
    model: params.model,
    messages: history.map((m) => ({ role: m.role, content: m.content })),
    stream: true,
    scaling_trace: true, // the model's own defaults may scale it too: then its trace shows
  };
  if (params.maxTokens) body.max_tokens = Number(params.maxTokens);
  if (params.temperature) body.temperature = Number(params.temperature);
  if (params.budget) body.budget = Number(params.budget);
  if (params.algorithm) body.algorithm = params.algorithm;
  if (params.logprobs && !scaled(params)) {
    body.logprobs = true;
    body.top_logprobs = 5;
  }
  return body;
}

function waitNoteOf(params: Params, model: Model | undefined): string {
  if (scaled(params)) return `Waiting for the answer (a scaled one generates ${params.budget} candidates first)…`;
  if (model?.state === "sleeping" || model?.state === "loading") return "Waiting for the model to wake up…";
  return "Waiting for the answer…";
}

export function Playground({ route }: { route: string[] }) {
  const formId = useId();
  const models = useLoad(loadModels, []);
  const [params, setParams] = useState<Params>({
    model: route[0] ?? "",
    maxTokens: "",
    temperature: "",
    budget: "",
    algorithm: "",
    logprobs: false,
  });
  const [messages, setMessages] = useState<Message[]>([]);
  const [draft, setDraft] = useState("");
  const [streaming, setStreaming] = useState(false);
  const controller = useRef<AbortController | null>(null);

  useEffect(() => () => controller.current?.abort(), []);

  const available = models.data ?? [];
  const known = available.some((m) => m.id === params.model);
  const chosen = { ...params, model: known ? params.model : preferred(available, route[0]) };

  function updateLast(change: (message: Message) => Message) {
    setMessages((old) => {
      const last = old.at(-1);
      return last ? [...old.slice(0, -1), change(last)] : old;
    });
  }

  async function ask(event: FormEvent) {
    event.preventDefault();
    const content = draft.trim();
    if (!content || !chosen.model || streaming) return;
    const question: Message = { ...BLANK, role: "user", content };
    const history = [...messages.filter((m) => m.content), question];
    const answer: Message = {
      ...BLANK,
      role: "assistant",
      model: chosen.model,
      waitNote: waitNoteOf(chosen, available.find((m) => m.id === chosen.model)),
      askedLogprobs: chosen.logprobs && !scaled(chosen),
    };
    setMessages([...messages, question, answer]);
    setDraft("");
    setStreaming(true);
    const abort = new AbortController();
    controller.current = abort;
    try {
      const response = await send("/v1/chat/completions", { body: bodyOf(chosen, history), signal: abort.signal });
      for await (const chunk of events(response)) {
        const piece = pieceOf(chunk);
        updateLast((m) => ({
          ...m,
          content: m.content + piece.content,
          tokens: piece.tokens.length > 0 ? [...m.tokens, ...piece.tokens] : m.tokens,
          finish: piece.finish ?? m.finish,
          trace: piece.trace ?? m.trace,
          error: piece.error ?? m.error,
        }));
      }
    } catch (failure) {
      if (abort.signal.aborted) updateLast((m) => ({ ...m, stopped: true }));
      else updateLast((m) => ({ ...m, error: messageOf(failure) }));
    } finally {
      if (controller.current === abort) {
        controller.current = null;
        setStreaming(false);
      }
    }
  }

  function clear() {
    controller.current?.abort();
    controller.current = null;
    setStreaming(false);
    setMessages([]);
  }

  function keys(event: KeyboardEvent<HTMLTextAreaElement>) {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      event.currentTarget.form?.requestSubmit();
    }
  }

  return (
    <>
      <ErrorNote error={models.error} />
      <Loading loading={models.loading && !models.data}>Loading the models…</Loading>
      <Settings
        form={formId}
        models={available}
        params={chosen}
        setParams={setParams}
        onRefresh={models.reload}
        disabled={streaming}
      />
      <section className="pg-log" aria-label="Conversation">
        {messages.length === 0 && <p className="muted">No messages yet. Write one below.</p>}
        {messages.map((message, index) => (
          <MessageView key={index} message={message} streaming={streaming && index === messages.length - 1} />
        ))}
      </section>
      <form id={formId} className="pg-compose" onSubmit={ask} aria-label="Send a message">
        <label>
          Your message (Ctrl+Enter sends)
          <textarea value={draft} onChange={(e) => setDraft(e.target.value)} onKeyDown={keys} rows={3} required />
        </label>
        <div className="pg-buttons">
          <button type="submit" disabled={streaming || !chosen.model}>
            Send
          </button>
          {streaming && (
            <button type="button" onClick={() => controller.current?.abort()}>
              Stop
            </button>
          )}
          <button type="button" onClick={clear} disabled={messages.length === 0}>
            Clear the conversation
          </button>
        </div>
      </form>
    </>
  );
}

function MessageView({ message, streaming }: { message: Message; streaming: boolean }) {
  if (message.role === "user") {
    return (
      <div className="pg-message pg-user">
        <p className="pg-role">You</p>
        <div className="pg-text">{message.content}</div>
      </div>
    );
  }
  const noLogprobs = message.askedLogprobs && !streaming && message.tokens.length === 0 && message.content !== "";
  return (
    <div className="pg-message pg-assistant">
      <p className="pg-role">{message.model}</p>
      {message.tokens.length > 0 ? (
        <Tokens tokens={message.tokens} streaming={streaming} />
      ) : (
        <div className="pg-text" aria-live="polite" aria-busy={streaming}>
          {message.content}
        </div>
      )}
      {streaming && !message.content && (
        <p className="muted" role="status">
          {message.waitNote}
        </p>
      )}
      {message.finish === "length" && <p className="muted">Cut at the token limit (max tokens).</p>}
      {message.stopped && <p className="muted">Stopped.</p>}
      {noLogprobs && (
        <p className="muted">
          {message.trace
            ? "No logprobs: this model scales its answers by default, and a scaled answer comes without them."
            : "No logprobs came back: the model server did not send them."}
        </p>
      )}
      {message.trace && <TraceDetails trace={message.trace} />}
      {message.error && (
        <p className="error" role="alert">
          {message.error}
        </p>
      )}
    </div>
  );
}

/** The official openai client with each response's raw body kept (SSE comments included, which the client drops), by the request's question; reading its streams. */
import OpenAI from "openai";
import type { fetch as undiciFetch } from "undici";

/**
 * The official openai client, its requests made by `send` (given the request's URL and its init,
 * without the client's signal: the recorded copy reads to the end even when the client stops
 * reading); `raw` holds each response's whole body, keyed by the first message's content.
 */
export function recordingClient(send: (url: string, init: RequestInit) => ReturnType<typeof undiciFetch>): { client: OpenAI; raw: Map<string, Promise<string>> } {
  const raw = new Map<string, Promise<string>>();
  const client = new OpenAI({
    baseURL: "http://llmsup/v1",
    apiKey: "unused",
    maxRetries: 0,
    timeout: 20_000,
    fetch: (async (url: string, init: RequestInit) => {
      const key = (JSON.parse(String(init.body)) as { messages: { content: string }[] }).messages[0]!.content;
      const r = await send(url, { ...init, signal: undefined } as RequestInit);
      const [mine, theirs] = r.body!.tee();
      raw.set(key, new Response(mine as ReadableStream).text());
      return new Response(theirs as ReadableStream, { status: r.status, headers: r.headers as unknown as Headers });
    }) as unknown as typeof fetch,
  });
  return { client, raw };
}

export interface Read {
  text: string;
  chunks: number;
  finish?: string | null;
  lastModel?: string;
  usage?: OpenAI.CompletionUsage | null;
  error?: unknown;
}

/** Reads a stream to its end (or its error), with what was read so far visible while it runs. */
export function consume(stream: AsyncIterable<OpenAI.ChatCompletionChunk>): { read: Read; done: Promise<void> } {
  const read: Read = { text: "", chunks: 0 };
  const done = (async () => {
    try {
      for await (const c of stream) {
        const piece = c.choices[0]?.delta?.content ?? "";
        read.text += piece;
        if (piece !== "") read.chunks++;
        read.finish = c.choices[0]?.finish_reason ?? read.finish;
        if (c.choices.length > 0) read.lastModel = c.model;
        if (c.usage) read.usage = c.usage;
      }
    } catch (e) {
      read.error = e;
    }
  })();
  return { read, done };
}

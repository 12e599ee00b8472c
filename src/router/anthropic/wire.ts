/**
 * A tier whose backend speaks Anthropic's Messages API, as the upstream layer
 * sees it: the OpenAI request the router built becomes a Messages request to
 * /v1/messages, and the answer — whole, streamed, or an error — comes back as
 * the OpenAI answer it stands for, so the relay, the continuation, the quality
 * detectors and the classification work on it unchanged. The translation is
 * request.ts, response.ts and stream.ts; this is the plumbing around them.
 */
import { Readable } from "node:stream";
import { streamBody, type UpstreamBody } from "../body.ts";
import { SseReader } from "../sse.ts";
import { toMessagesRequest, wantsStreamUsage } from "./request.ts";
import { toOpenAiAnswer, toOpenAiError } from "./response.ts";
import { MessagesStreamTranslator } from "./stream.ts";

export const MESSAGES_PATH = "/v1/messages";

type Headers = Record<string, string | string[] | undefined>;


export interface MessagesExchange {
  /** The request body to POST to MESSAGES_PATH. */
  readonly body: string;
  /** The upstream's answer as the OpenAI answer it stands for. */
  answer(status: number, headers: Headers, body: AsyncIterable<Buffer>): { headers: Headers; body: UpstreamBody };
}

function answerBody(source: AsyncIterable<string>): UpstreamBody {
  return streamBody(Readable.from(source, { objectMode: false }));
}

async function* whole(source: AsyncIterable<Buffer>, translate: (text: string) => string): AsyncGenerator<string> {
  const parts: Buffer[] = [];
  for await (const c of source) parts.push(c);
  yield translate(Buffer.concat(parts).toString("utf8"));
}

async function* events(source: AsyncIterable<Buffer>, t: MessagesStreamTranslator): AsyncGenerator<string> {
  const reader = new SseReader();
  for await (const c of source) {
    let out = "";
    for (const item of reader.pushBytes(c)) out += t.push(item);
    if (out !== "") yield out;
  }
}

/**
 * The Messages exchange for an OpenAI request to `path` (/v1/chat/completions or /v1/completions),
 * or the reason it cannot be sent to an Anthropic model.
 */
export function messagesExchange(path: string, openaiBody: string, now: () => number = Date.now): MessagesExchange | { readonly problem: string } {
  const endpoint = path === "/v1/chat/completions" ? "chat" : path === "/v1/completions" ? "completion" : undefined;
  if (!endpoint) return { problem: `an Anthropic backend serves chat and completion requests, not ${path}` };
  let request: Record<string, unknown>;
  try {
    request = JSON.parse(openaiBody) as Record<string, unknown>;
  } catch (e) {
    return { problem: `the request is not JSON: ${(e as Error).message}` };
  }
  const t = toMessagesRequest(request, endpoint);
  if (!t.ok) return { problem: t.problem };
  const includeUsage = wantsStreamUsage(request);
  return {
    body: JSON.stringify(t.body),
    answer(status, headers, body) {
      const out: Headers = { ...headers };
      delete out["content-length"];
      const created = Math.floor(now() / 1000);
      const type = String(headers["content-type"] ?? "");
      if (status >= 200 && status < 300 && type.includes("text/event-stream")) {
        return { headers: out, body: answerBody(events(body, new MessagesStreamTranslator({ endpoint, includeUsage, created }))) };
      }
      out["content-type"] = "application/json";
      if (status >= 200 && status < 300) {
        return {
          headers: out,
          body: answerBody(
            whole(body, (text) => {
              try {
                return JSON.stringify(toOpenAiAnswer(JSON.parse(text) as Record<string, unknown>, endpoint, created));
              } catch {
                // Not the API's JSON: passed on as it came, for the router to find unreadable.
                return text;
              }
            }),
          ),
        };
      }
      return { headers: out, body: answerBody(whole(body, toOpenAiError)) };
    },
  };
}

/** The simulated engine kinds, by name. */
import type { SimKind } from "../options.ts";
import { ANTHROPIC } from "./anthropic.ts";
import type { KindSpec } from "./kind.ts";
import { LLAMACPP } from "./llamacpp.ts";
import { OLLAMA } from "./ollama.ts";
import { VLLM } from "./vllm.ts";

export const KINDS: Readonly<Record<SimKind, KindSpec>> = { vllm: VLLM, llamacpp: LLAMACPP, ollama: OLLAMA, anthropic: ANTHROPIC };

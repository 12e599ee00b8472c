/** A route's `cache_embeddings` and `cache_semantic_similarity`: read, defaulted, and refused with a stable rule when wrong. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { validateConfigText } from "../../src/config/load.ts";
import type { ConfigProblem } from "../../src/config/types.ts";
import { MINIMAL, minimalWith } from "../config/fixtures.ts";

const ROUTE = 'model = "llama"\n';
const withRoute = (lines: string, text = MINIMAL) => (text === MINIMAL ? minimalWith(ROUTE, `${ROUTE}${lines}`) : text.replace(ROUTE, `${ROUTE}${lines}`));

function problems(text: string): readonly ConfigProblem[] {
  const r = validateConfigText(text);
  assert.equal(r.ok, false, "expected problems");
  return r.ok ? [] : r.problems;
}

test("cache_embeddings names the embeddings tier; cache_semantic_similarity defaults to 0.9", () => {
  const r = validateConfigText(withRoute('cache = true\ncache_embeddings = { backend = "llamacpp-cpu", model = "nomic-embed-text" }\n'));
  assert.ok(r.ok, JSON.stringify(!r.ok && r.problems));
  assert.deepEqual(r.config.routes[0]!.cache_embeddings, { backend: "llamacpp-cpu", model: "nomic-embed-text" });
  assert.equal(r.config.routes[0]!.cache_semantic_similarity, 0.9);
  const plain = validateConfigText(MINIMAL);
  assert.ok(plain.ok);
  assert.equal(plain.config.routes[0]!.cache_embeddings, undefined);
  const set = validateConfigText(withRoute('cache = true\ncache_embeddings = { backend = "vllm-gpu0", model = "e5" }\ncache_semantic_similarity = 0.8\n'));
  assert.ok(set.ok);
  assert.equal(set.config.routes[0]!.cache_semantic_similarity, 0.8);
});

test("refused: an unknown backend (reference), a kind without /v1/embeddings (embeddings_kind), the cache off (requires_cache), a threshold outside (0, 1]", () => {
  const unknown = problems(withRoute('cache = true\ncache_embeddings = { backend = "nope", model = "e" }\n'));
  assert.ok(unknown.some((p) => p.path === "route[0].cache_embeddings.backend" && p.rule === "reference" && /llamacpp-cpu/.test(p.message)), JSON.stringify(unknown));

  const anthropic = `${MINIMAL}\n[[backend]]\nname = "claude"\nkind = "anthropic"\nurl = "https://api.anthropic.com"\n`;
  const kind = problems(withRoute('cache = true\ncache_embeddings = { backend = "claude", model = "e" }\n', anthropic));
  const p = kind.find((x) => x.rule === "embeddings_kind");
  assert.ok(p, JSON.stringify(kind));
  assert.equal(p.path, "route[0].cache_embeddings.backend");
  assert.match(p.message, /kind "anthropic".*\/v1\/embeddings/);

  const off = problems(withRoute('cache_embeddings = { backend = "llamacpp-cpu", model = "e" }\n'));
  assert.ok(off.some((x) => x.path === "route[0].cache_embeddings" && x.rule === "requires_cache"), JSON.stringify(off));

  for (const bad of ["0", "1.5", '"high"']) {
    const ps = problems(withRoute(`cache = true\ncache_semantic_similarity = ${bad}\n`));
    assert.ok(ps.some((x) => x.path === "route[0].cache_semantic_similarity"), `${bad}: ${JSON.stringify(ps)}`);
  }
  const extra = problems(withRoute('cache = true\ncache_embeddings = { backend = "llamacpp-cpu", model = "e", dims = 3 }\n'));
  assert.ok(extra.some((x) => x.rule === "unknown_key"), JSON.stringify(extra));
});

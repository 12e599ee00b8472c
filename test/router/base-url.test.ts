/** A backend URL written the way OpenAI-compatible base URLs usually are, ending in /v1, reaches the same endpoints as one without. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { startRouter } from "../helpers/router.ts";
import { startSim } from "../helpers/sim.ts";
import { answers200, waitUntil } from "../helpers/wait.ts";

for (const suffix of ["", "/", "/v1", "/v1/"]) {
  test(`an openai backend at http://host:port${suffix} is called at /v1/chat/completions, never /v1/v1/…`, async (t) => {
    const sim = await startSim(t, ["--kind", "vllm", "--port", "0", "--model", "m", "--load-time", "0s"]);
    await waitUntil(`${sim.url}/health to answer 200`, () => answers200(`${sim.url}/health`));
    const h = await startRouter(t, `[[backend]]\nname = "cloud"\nkind = "openai"\nurl = "${sim.url}${suffix}"\n[[route]]\nmodel = "m"\ntiers = [{ backend = "cloud", model = "m" }]\n`);
    const r = await h.client.chat.completions.create({ model: "m", messages: [{ role: "user", content: "hello" }], max_tokens: 8 });
    assert.equal(r.choices[0]!.finish_reason === "stop" || r.choices[0]!.finish_reason === "length", true, JSON.stringify(r));
    assert.ok((r.choices[0]!.message.content ?? "").length > 0);
  });
}

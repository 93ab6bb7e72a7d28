// The npm openai package's service_tier against Sluice: flex and priority
// on chat (plain and streamed), the tier echoed; a tier Sluice does not
// serve is a 400 on param service_tier. Prints "ok - " per step; exits
// non-zero on failure.
import OpenAI from "openai";
import assert from "node:assert/strict";

const client = new OpenAI({ baseURL: process.env.SLUICE_URL, apiKey: process.env.SLUICE_KEY, maxRetries: 0 });
const model = process.env.MODEL;
const messages = [{ role: "user", content: "hello" }];

const flex = await client.chat.completions.create({ model, max_tokens: 8, messages, service_tier: "flex" });
assert.equal(flex.service_tier, "flex");
assert.equal(flex.choices.length, 1);
console.log(`ok - flex chat served at ${flex.service_tier}, completion=${flex.usage.completion_tokens}`);

const pri = await client.chat.completions.create({ model, max_tokens: 8, messages, service_tier: "priority" });
assert.equal(pri.service_tier, "priority");
console.log(`ok - priority chat served at ${pri.service_tier}`);

const stream = await client.chat.completions.create({ model, max_tokens: 8, messages, stream: true, service_tier: "flex" });
let chunks = 0;
for await (const ch of stream) {
  assert.equal(ch.service_tier, "flex");
  chunks++;
}
assert.ok(chunks > 1);
console.log(`ok - streamed flex chat: ${chunks} chunks, each at flex`);

const auto = await client.completions.create({ model, max_tokens: 8, prompt: "hello", service_tier: "auto" });
assert.equal(auto.service_tier, "default");
console.log(`ok - auto completion served at ${auto.service_tier}`);

try {
  await client.chat.completions.create({ model, max_tokens: 8, messages, service_tier: "scale" });
  assert.fail("service_tier scale was accepted");
} catch (e) {
  assert.ok(e instanceof OpenAI.BadRequestError, String(e));
  assert.equal(e.param, "service_tier");
  console.log(`ok - service_tier scale refused: ${e.status} ${e.message}`);
}

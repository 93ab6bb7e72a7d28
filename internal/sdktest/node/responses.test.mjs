// The npm openai package's Responses calls against Sluice: create (plain and
// stream: true), previous_response_id, retrieve and delete. Prints "ok - "
// per step; exits non-zero on failure.
import OpenAI from "openai";
import assert from "node:assert/strict";

const client = new OpenAI({ baseURL: process.env.SLUICE_URL, apiKey: process.env.SLUICE_KEY, maxRetries: 0 });
const model = process.env.MODEL;

const r = await client.responses.create({ model, input: "hello from node", instructions: "be brief", max_output_tokens: 16,
  metadata: { suite: "node" } });
assert.equal(r.object, "response");
assert.ok(r.id.startsWith("resp_"));
assert.ok(r.output_text.length > 0);
assert.ok(r.usage.input_tokens > 0 && r.usage.output_tokens > 0);
assert.equal(r.metadata.suite, "node");
console.log(`ok - responses.create: ${r.id} "${r.output_text}" input=${r.usage.input_tokens} output=${r.usage.output_tokens}`);

const stream = await client.responses.create({ model, input: "tell me a story", max_output_tokens: 12, stream: true });
const types = [];
let text = "", completed;
for await (const ev of stream) {
  types.push(ev.type);
  if (ev.type === "response.output_text.delta") text += ev.delta;
  if (ev.type === "response.completed") completed = ev.response;
}
assert.equal(types[0], "response.created");
assert.equal(types.at(-1), "response.completed");
for (const t of ["response.in_progress", "response.output_item.added", "response.content_part.added", "response.output_text.delta", "response.output_text.done"]) {
  assert.ok(types.includes(t), `stream lacks ${t}: ${types}`);
}
assert.ok(completed && completed.usage.output_tokens > 0 && text.length > 0);
console.log(`ok - responses.create stream: ${types.length} events, "${text}", usage input=${completed.usage.input_tokens} output=${completed.usage.output_tokens}`);

const next = await client.responses.create({ model, input: "and then?", previous_response_id: r.id, max_output_tokens: 8 });
assert.equal(next.previous_response_id, r.id);
// The engine got the history: the first turn's input and output, then this one.
assert.ok(next.usage.input_tokens > r.usage.input_tokens + r.usage.output_tokens);
console.log(`ok - previous_response_id: ${next.id} input=${next.usage.input_tokens} (first turn ${r.usage.input_tokens})`);

const got = await client.responses.retrieve(r.id);
assert.equal(got.id, r.id);
assert.equal(got.output_text, r.output_text);
console.log(`ok - responses.retrieve: ${got.id}`);

await client.responses.delete(r.id);
try {
  await client.responses.retrieve(r.id);
  assert.fail("retrieve after delete succeeded");
} catch (e) {
  assert.ok(e instanceof OpenAI.NotFoundError, `want 404, got ${e}`);
}
console.log(`ok - responses.delete: ${r.id} deleted, retrieve then 404`);

// The npm openai package's chat call against Sluice: the baseline every
// feature script builds on. Prints "ok - " per step; exits non-zero on failure.
import OpenAI from "openai";
import assert from "node:assert/strict";

const client = new OpenAI({ baseURL: process.env.SLUICE_URL, apiKey: process.env.SLUICE_KEY, maxRetries: 0 });
const model = process.env.MODEL;

const cc = await client.chat.completions.create({ model, max_tokens: 8, messages: [{ role: "user", content: "hello" }] });
assert.equal(cc.choices.length, 1);
assert.ok(cc.usage.prompt_tokens > 0);
console.log(`ok - chat: prompt=${cc.usage.prompt_tokens} completion=${cc.usage.completion_tokens}`);

const stream = await client.chat.completions.create({ model, max_tokens: 8, stream: true, stream_options: { include_usage: true },
  messages: [{ role: "user", content: "tell me a story" }] });
let chunks = 0, usage;
for await (const ch of stream) { chunks++; if (ch.usage) usage = ch.usage; }
assert.ok(chunks > 1 && usage && usage.completion_tokens > 0);
console.log(`ok - streamed chat: ${chunks} chunks, completion=${usage.completion_tokens}`);

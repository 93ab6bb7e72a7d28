// sluice.yaml:
// inference:
//   models:
//     - {name: {{model}}, task: embed, max_batch_size: 8, max_model_len: 1024}
//     - {name: {{model2}}, task: embed, max_batch_size: 8, max_model_len: 1024}
//     - {name: {{model3}}, task: embed, max_batch_size: 8, max_model_len: 1024, endpoints: ["http://127.0.0.1:1"], fallbacks: [{{model2}}]}
// pricing:
//   {{model}}: {input_tokens: 0.00002, output_tokens: 0.00003}
//   {{model2}}: {input_tokens: 0.00005, output_tokens: 0.00003}
//   {{model3}}: {input_tokens: 0.00001, output_tokens: 0.00003}
// server: {request_timeout: 30s}

// The npm openai package's embeddings calls against Sluice: a string (the
// package asks for base64 by default and decodes it), a batch with
// dimensions and float, token ids, and a fallback call whose header shows
// through .withResponse(). Prints "ok - " per step; exits non-zero on failure.
import OpenAI from "openai";
import assert from "node:assert/strict";

const client = new OpenAI({ baseURL: process.env.SLUICE_URL, apiKey: process.env.SLUICE_KEY, maxRetries: 0 });
const model = process.env.MODEL;
const model2 = `${model}-b`, model3 = `${model}-c`;

const one = await client.embeddings.create({ model, input: "the quick brown fox" });
assert.equal(one.data.length, 1);
assert.ok(Array.isArray(one.data[0].embedding) && one.data[0].embedding.length > 0, "base64 decoded to numbers");
assert.ok(one.data[0].embedding.every(Number.isFinite));
assert.ok(one.usage.prompt_tokens > 0 && one.usage.total_tokens === one.usage.prompt_tokens);
console.log(`ok - string (base64 by default, decoded): ${one.data[0].embedding.length} dims, prompt_tokens=${one.usage.prompt_tokens}`);

const many = await client.embeddings.create({ model, input: ["first input", "a second, longer input", "third"], dimensions: 16,
  encoding_format: "float", user: "u-1" });
assert.equal(many.data.length, 3);
many.data.forEach((d, i) => { assert.equal(d.index, i); assert.equal(d.embedding.length, 16); });
console.log(`ok - 3 strings, dimensions 16, float: prompt_tokens=${many.usage.prompt_tokens}`);

const ids = await client.embeddings.create({ model, input: [[1, 2, 3], [4, 5, 6, 7, 8]] });
assert.equal(ids.data.length, 2);
assert.equal(ids.usage.prompt_tokens, 8, "token ids are counted as sent");
console.log(`ok - token ids 3+5: prompt_tokens=${ids.usage.prompt_tokens}`);

await assert.rejects(client.chat.completions.create({ model, messages: [{ role: "user", content: "hi" }] }),
  (e) => e.status === 400 && e.param === "model");
console.log("ok - chat to an embedding model: 400 on model");

// The fallback: model2 serves a request for model3 (its endpoint is dead)
// once a worker has published model2 healthy (every second).
await client.embeddings.create({ model: model2, input: "warm up" });
await new Promise((r) => setTimeout(r, 2500));
const { data: fb, response } = await client.embeddings.create({ model: model3, input: "served by the fallback" }).withResponse();
assert.equal(fb.model, model2);
assert.equal(response.headers.get("sluice-fallback"), `${model3}->${model2}`);
console.log(`ok - fallback: asked ${model3}, served by ${fb.model}, Sluice-Fallback: ${response.headers.get("sluice-fallback")}, prompt_tokens=${fb.usage.prompt_tokens}`);

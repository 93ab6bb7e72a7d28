// The npm openai package's Files and Batch calls against Sluice: upload a
// batch file (files.create with toFile), batches.create, retrieve until
// completed, files.content. Prints "ok - " per step; exits non-zero on failure.
import OpenAI, { toFile } from "openai";
import assert from "node:assert/strict";

const client = new OpenAI({ baseURL: process.env.SLUICE_URL, apiKey: process.env.SLUICE_KEY, maxRetries: 0 });
const model = process.env.MODEL;
const n = 12;

const lines = [];
for (let i = 0; i < n; i++) {
  lines.push(JSON.stringify({ custom_id: `node-${i}`, method: "POST", url: "/v1/chat/completions",
    body: { model, max_tokens: 8, messages: [{ role: "user", content: `line ${i}` }] } }));
}
const file = await client.files.create({ file: await toFile(Buffer.from(lines.join("\n") + "\n"), "batch.jsonl"), purpose: "batch" });
assert.match(file.id, /^file-/);
assert.equal(file.purpose, "batch");
console.log(`ok - files.create: ${file.id}, ${file.bytes} bytes`);

const got = await client.files.retrieve(file.id);
assert.equal(got.id, file.id);
console.log(`ok - files.retrieve: ${got.filename}`);

let batch = await client.batches.create({ input_file_id: file.id, endpoint: "/v1/chat/completions", completion_window: "24h",
  metadata: { from: "node" } });
assert.equal(batch.object, "batch");
console.log(`ok - batches.create: ${batch.id} ${batch.status}`);

const start = Date.now();
while (batch.status !== "completed") {
  assert.ok(!["failed", "expired", "cancelled"].includes(batch.status), `batch ${batch.status}`);
  assert.ok(Date.now() - start < 60000, "batch did not complete in 60 s");
  await new Promise((r) => setTimeout(r, 100));
  batch = await client.batches.retrieve(batch.id);
}
assert.equal(batch.request_counts.total, n);
assert.equal(batch.request_counts.completed, n);
console.log(`ok - batches.retrieve: completed ${batch.request_counts.completed}/${batch.request_counts.total} in ${Date.now() - start} ms`);

const content = await client.files.content(batch.output_file_id);
const text = await content.text();
const out = text.trim().split("\n").map((l) => JSON.parse(l));
const ids = new Set(out.map((l) => l.custom_id));
assert.equal(out.length, n);
assert.equal(ids.size, n);
for (const l of out) {
  assert.equal(l.response.status_code, 200);
  assert.equal(l.response.body.object, "chat.completion");
}
console.log(`ok - files.content: ${out.length} output lines, each custom_id once`);

const page = await client.files.list();
assert.ok(page.data.some((f) => f.id === batch.output_file_id));
const del = await client.files.delete(file.id);
assert.equal(del.deleted, true);
console.log("ok - files.list and files.delete");

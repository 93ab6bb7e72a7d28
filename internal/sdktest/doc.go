// Package sdktest runs the official OpenAI SDKs, unchanged, against the real
// local stack (PostgreSQL, Redis, the simulator, the worker, the functions
// behind the dev router): openai-go v3 in Go tests, and the npm `openai`
// package in node/*.test.mjs, each script run by TestNodeSDK. The package has
// no code of its own: its tests are the proof that an SDK user's code works
// against Sluice as it does against OpenAI.
package sdktest

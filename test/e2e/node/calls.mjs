// Makes calls with the official OpenAI Node SDK and prints what each one
// returned, as JSON, for the Go end-to-end tests.
//
// Reads from standard input:
//   {"baseURL": "http://127.0.0.1:PORT/v1",
//    "calls": [{"id": "node-allowed", "op": "chat" | "chat_stream" | "models" | "transcribe",
//               "key": "ghub_sk_live_...", "noKey": false, "content": "hello", "repeat": 1,
//               "size": 1024, "headers": {"X-Name": "value"}, "maxRetries": 2,
//               "model": "e2e-model", "maxTokens": 10, "dupModel": "o3"}]}
// ("size" is the length of the audio file a transcribe call uploads;
// "dupModel" adds a second "model" member to the JSON body the SDK sends.)
// Writes to standard output one result per call, in order:
//   {"id", "ok", "status", "headers": {lowercase name: value}, "content",
//    "usage": {"prompt_tokens", "completion_tokens", ...}, "models",
//    "error": {"name", "classes", "status", "code", "type", "param", "message"}, "ms"}
import OpenAI, { toFile } from 'openai';

// Response headers the tests look at.
const HEADERS = [
  'content-type', 'www-authenticate', 'x-should-retry', 'retry-after',
  'x-ratelimit-limit', 'x-ratelimit-remaining', 'x-ratelimit-reset',
  'x-ratelimit-limit-requests', 'x-ratelimit-remaining-requests', 'x-ratelimit-reset-requests',
  'x-ratelimit-limit-tokens', 'x-ratelimit-remaining-tokens', 'x-ratelimit-reset-tokens',
  'x-balance-low', 'x-balance-remaining',
];

// The SDK's error classes, most specific first.
const CLASSES = [
  'AuthenticationError', 'PermissionDeniedError', 'RateLimitError', 'InternalServerError',
  'BadRequestError', 'NotFoundError', 'UnprocessableEntityError', 'APIConnectionError', 'APIError', 'OpenAIError',
];

function pick(headers) {
  const out = {};
  if (!headers) return out;
  for (const name of HEADERS) {
    const v = typeof headers.get === 'function' ? headers.get(name) : headers[name];
    if (v !== null && v !== undefined) out[name] = v;
  }
  return out;
}

async function run(baseURL, call) {
  const headers = { 'X-E2E-Call': call.id, ...(call.headers || {}) };
  if (call.noKey) headers.Authorization = null; // sends no credential at all
  const client = new OpenAI({
    apiKey: call.key || 'unused',
    baseURL,
    defaultHeaders: headers,
    timeout: 20_000,
    ...(call.maxRetries === undefined ? {} : { maxRetries: call.maxRetries }),
    ...(call.dupModel === undefined ? {} : { fetch: duplicateModel(call.dupModel) }),
  });
  const params = { model: call.model || 'e2e-model', ...(call.maxTokens === undefined ? {} : { max_tokens: call.maxTokens }) };
  const started = performance.now();
  const result = { id: call.id, ok: false };
  try {
    const messages = [{ role: 'user', content: (call.content || 'hello').repeat(call.repeat || 1) }];
    if (call.op === 'models') {
      const { data, response } = await client.models.list().withResponse();
      Object.assign(result, { status: response.status, headers: pick(response.headers), models: data.data.map((m) => m.id) });
    } else if (call.op === 'chat') {
      const { data, response } = await client.chat.completions.create({ ...params, messages }).withResponse();
      Object.assign(result, { status: response.status, headers: pick(response.headers), content: data.choices[0].message.content, usage: data.usage });
    } else if (call.op === 'transcribe') {
      const file = await toFile(Buffer.alloc(call.size), 'audio.mp3', { type: 'audio/mpeg' });
      const { data, response } = await client.audio.transcriptions.create({ model: 'gpt-transcribe', file }).withResponse();
      Object.assign(result, { status: response.status, headers: pick(response.headers), content: data.text });
    } else if (call.op === 'chat_stream') {
      const { data: stream, response } = await client.chat.completions.create({ ...params, messages, stream: true }).withResponse();
      let content = '';
      let chunks = 0;
      let usage;
      for await (const chunk of stream) {
        chunks++;
        if (chunk.choices.length > 0 && chunk.choices[0].delta.content) content += chunk.choices[0].delta.content;
        if (chunk.usage) usage = chunk.usage;
      }
      Object.assign(result, { status: response.status, headers: pick(response.headers), content, chunks, usage });
    } else {
      throw new Error(`unknown op ${call.op}`);
    }
    result.ok = true;
  } catch (err) {
    result.error = {
      name: err.constructor.name,
      classes: CLASSES.filter((c) => OpenAI[c] && err instanceof OpenAI[c]),
      status: err.status,
      code: err.code,
      type: err.type,
      param: err.param,
      message: err.message,
    };
    result.status = err.status;
    result.headers = pick(err.headers);
  }
  result.ms = Math.round(performance.now() - started);
  return result;
}

// duplicateModel returns a fetch that sends the SDK's JSON body with a
// second "model" member, model, before the SDK's own.
function duplicateModel(model) {
  return (url, init) => fetch(url, { ...init, body: String(init.body).replace('{', `{"model":${JSON.stringify(model)},`) });
}

let input = '';
for await (const chunk of process.stdin) input += chunk;
const { baseURL, calls } = JSON.parse(input);
const results = [];
for (const call of calls) results.push(await run(baseURL, call));
process.stdout.write(JSON.stringify(results) + '\n');

'use strict';
/*
 * Nimbus's built-in Node.js runtime: runs inside an instance, needs nothing but Node 18+.
 *
 * Started as `node --max-old-space-size=<N> bootstrap.cjs` (no npm dependencies). It is
 * the Node twin of runtimes/python/bootstrap.py and keeps the same contract.
 *
 * Environment: `_HANDLER` (`index.handler`, `src/app.handler`, `index.nested.fn`),
 * `LAMBDA_TASK_ROOT` (the code; made the working directory), `NIMBUS_RUNTIME_API_SOCKET`
 * (unix socket of the Runtime API) or else `AWS_LAMBDA_RUNTIME_API` (`host:port`), and
 * the `AWS_LAMBDA_FUNCTION_*` descriptors, `NIMBUS_NAMESPACE`, `AWS_REGION`.
 *
 * Protocol (AWS Lambda Runtime API, HTTP/1.1, one keep-alive connection, retried once
 * when it drops):
 *
 * 1. Init: load the handler's file once (`.js`, `.mjs` or `.cjs`; CommonJS with
 *    `require`, ES modules with `import()`), look the function up. On failure
 *    `POST /2018-06-01/runtime/init/error` (header `Lambda-Runtime-Function-Error-Type`,
 *    body `{errorType, errorMessage, stackTrace}`), then exit 1. Types:
 *    `Runtime.MalformedHandlerName`, `Runtime.ImportModuleError` (a module not found),
 *    `Runtime.UserCodeSyntaxError`, `Runtime.HandlerNotFound`, or the name of any other
 *    error thrown by module-level code.
 * 2. Loop: `GET /2018-06-01/runtime/invocation/next` gives the event (JSON body, empty
 *    means `{}`) and the `Lambda-Runtime-*` headers.
 * 3. `handler(event, context, callback)`. The call ends when a returned promise settles,
 *    when `callback(error, value)` is called (with `context.callbackWaitsForEmptyEventLoop`
 *    true, the default, once the event loop is empty, as Lambda does), when a handler
 *    without a callback parameter returns a plain value, or when the event loop empties
 *    without any of these (the result is then `null`). Its JSON goes to
 *    `POST .../invocation/{id}/response`.
 * 4. A thrown error, a rejected promise or `callback(error)` goes to
 *    `POST .../invocation/{id}/error` (header `Unhandled`, body `{errorType, errorMessage,
 *    requestId, stackTrace}`, user frames only); a result that is not JSON gives
 *    `Runtime.MarshalError`. An uncaught exception or unhandled rejection outside the
 *    handler's promise is logged and ends the process (as on Lambda): the call in flight
 *    fails with `Runtime.ExitError` (exit status 129 or 128).
 *
 * stdout and stderr are pipes, which Node writes asynchronously when they are full: both
 * are drained before every post, so all output of a call is in the platform's pipe before
 * its answer.
 */

const fs = require('fs');
const http = require('http');
const path = require('path');

const API = '/2018-06-01/runtime';
const NEXT = `${API}/invocation/next`;
const JSON_TYPE = 'application/json';
const OWN_FILE = __filename;
const EXTENSIONS = ['.js', '.mjs', '.cjs'];
const MODULE_NOT_FOUND = new Set(['MODULE_NOT_FOUND', 'ERR_MODULE_NOT_FOUND']);
const REQUIRE_FAILED_ESM = new Set(['ERR_REQUIRE_ESM', 'ERR_REQUIRE_ASYNC_MODULE']);
const env = process.env;

/** A failure of the runtime contract (not of user code), with a stable `Runtime.*` type. */
class Fault extends Error {
  constructor(errorType, message, stackTrace) {
    super(message);
    this.errorType = errorType;
    this.stackTrace = stackTrace || [];
  }
}

// ---- the Runtime API client -----------------------------------------------------------

/** HTTP/1.1 keep-alive client for the Runtime API, over a unix socket or TCP. */
class Client {
  constructor(environ) {
    const socketPath = environ.NIMBUS_RUNTIME_API_SOCKET;
    const api = environ.AWS_LAMBDA_RUNTIME_API || '127.0.0.1:9001';
    if (socketPath) {
      this.target = { socketPath };
      this.host = 'localhost';
    } else {
      const colon = api.lastIndexOf(':');
      const host = api.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
      this.target = { host, port: Number(api.slice(colon + 1)) };
      this.host = api;
    }
    // Idle keep-alive sockets are unref'd by the agent: they never keep the loop alive.
    this.agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  }

  /** Send one request (again once if the connection dropped); resolve with the answer. */
  async request(method, urlPath, body, headers) {
    try {
      return await this._once(method, urlPath, body, headers);
    } catch (_first) {
      return this._once(method, urlPath, body, headers); // a second failure ends the runtime
    }
  }

  _once(method, urlPath, body, headers) {
    return new Promise((resolve, reject) => {
      const head = { Host: this.host, ...headers };
      if (body !== undefined) head['Content-Length'] = body.length;
      const req = http.request(
        { ...this.target, agent: this.agent, method, path: urlPath, headers: head },
        (res) => {
          const chunks = [];
          res.on('data', (chunk) => chunks.push(chunk));
          res.on('end', () =>
            resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }),
          );
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  }
}

// ---- context ----------------------------------------------------------------------------

/** Per-process values, read when the runtime starts. */
function describeFunction(environ) {
  const name = environ.AWS_LAMBDA_FUNCTION_NAME || 'function';
  const version = environ.AWS_LAMBDA_FUNCTION_VERSION || '$LATEST';
  const day = new Date().toISOString().slice(0, 10).replace(/-/g, '/');
  const stream = `${day}/[${version}]${process.pid.toString(16).padStart(32, '0')}`;
  return {
    functionName: name,
    functionVersion: version,
    memoryLimitInMB: environ.AWS_LAMBDA_FUNCTION_MEMORY_SIZE || '128',
    logGroupName: environ.AWS_LAMBDA_LOG_GROUP_NAME || `/aws/lambda/${name}`,
    logStreamName:
      environ.AWS_LAMBDA_LOG_STREAM_NAME || stream,
    namespace: environ.NIMBUS_NAMESPACE || 'default',
    region: environ.AWS_REGION || environ.AWS_DEFAULT_REGION || 'us-east-1',
    environ: Object.entries(environ)
      .map(([k, v]) => `${k}=${v}`)
      .join(';'),
  };
}

const DEADLINE = Symbol('deadlineMs');

/** Lambda's Node `context` and SCF's in one object. */
class Context {
  constructor(fn, requestId, headers, nowMs) {
    const deadline = Number(headers['lambda-runtime-deadline-ms']);
    const deadlineMs = deadline > 0 ? deadline : nowMs + 900000;
    Object.defineProperty(this, DEADLINE, { value: deadlineMs });
    this.callbackWaitsForEmptyEventLoop = true;
    this.awsRequestId = requestId;
    this.invokedFunctionArn =
      headers['lambda-runtime-invoked-function-arn'] ||
      `arn:aws:lambda:${fn.region}:000000000000:function:${fn.functionName}`;
    this.functionName = fn.functionName;
    this.functionVersion = fn.functionVersion;
    this.memoryLimitInMB = fn.memoryLimitInMB;
    this.logGroupName = fn.logGroupName;
    this.logStreamName = fn.logStreamName;
    this.identity = undefined;
    this.clientContext = undefined;
    // SCF's names
    this.request_id = requestId;
    this.function_name = fn.functionName;
    this.function_version = fn.functionVersion;
    this.namespace = fn.namespace;
    this.memory_limit_in_mb = fn.memoryLimitInMB;
    this.time_limit_in_ms = Math.max(deadlineMs - nowMs, 0);
    this.environ = fn.environ;
    const cognito = headers['lambda-runtime-cognito-identity'];
    const client = headers['lambda-runtime-client-context'];
    try {
      if (cognito) {
        const ids = JSON.parse(cognito);
        this.identity = {
          cognitoIdentityId: ids.cognitoIdentityId,
          cognitoIdentityPoolId: ids.cognitoIdentityPoolId,
        };
      }
      if (client) this.clientContext = JSON.parse(client);
    } catch (err) {
      throw new Fault('Runtime.LambdaContextUnmarshalError', `Bad context: ${err.message}`);
    }
  }

  getRemainingTimeInMillis() {
    return Math.max(this[DEADLINE] - Date.now(), 0);
  }
}

// ---- errors -----------------------------------------------------------------------------

function isError(value) {
  if (value instanceof Error) return true;
  // an Error of another realm (vm), or an error-like object
  return (
    value !== null &&
    typeof value === 'object' &&
    typeof value.message === 'string' &&
    typeof value.name === 'string'
  );
}

/** `error.name`, unless that is the inherited "Error" of a subclass that has a better name. */
function errorName(err) {
  let name = 'Error';
  try {
    name = String(err.name || 'Error');
    const ctor = err.constructor && err.constructor.name;
    if (name === 'Error' && ctor && ctor !== 'Error' && ctor !== 'Object') name = ctor;
  } catch (_ignored) {
    // a throwing getter: keep what we have
  }
  return name;
}

function safeString(value) {
  try {
    return String(value);
  } catch (_ignored) {
    return Object.prototype.toString.call(value);
  }
}

/** Lambda-style `stackTrace` lines: the user's frames, without the runtime's or Node's. */
function userFrames(stack) {
  if (typeof stack !== 'string') return [];
  return stack
    .split('\n')
    .filter((line) => /^\s+at /.test(line))
    .filter((line) => !line.includes(OWN_FILE) && !/\(node:|at node:|\(<anonymous>\)$/.test(line));
}

/** The location Node prints above a SyntaxError's name (`file:line`, source, caret). */
function syntaxLocation(stack) {
  if (typeof stack !== 'string') return [];
  const lines = stack.split('\n');
  const end = lines.findIndex((line) => /^SyntaxError\b/.test(line));
  return end > 0 ? lines.slice(0, end).filter((line) => line.trim() !== '') : [];
}

function toPayload(err) {
  let errorType = err === null ? 'null' : typeof err; // a thrown non-Error: Lambda's choice
  let errorMessage = safeString(err);
  let stackTrace = [];
  if (err instanceof Fault) {
    [errorType, errorMessage, stackTrace] = [err.errorType, err.message, err.stackTrace];
  } else if (isError(err)) {
    [errorType, errorMessage] = [errorName(err), safeString(err.message)];
    stackTrace = userFrames(err.stack);
  }
  const trace = stackTrace.length ? `\n${stackTrace.join('\n')}\n` : '\n';
  process.stderr.write(`[ERROR] ${errorType}: ${errorMessage}${trace}`);
  return { errorType, errorMessage, stackTrace };
}

/** Resolve once everything written to stdout and stderr is in their pipes. */
function flushStdio() {
  const waits = [process.stdout, process.stderr]
    .filter((stream) => stream.writableLength > 0 && !stream.destroyed)
    .map(
      (stream) =>
        new Promise((resolve) => {
          const done = () => {
            stream.removeListener('drain', done);
            stream.removeListener('error', done);
            stream.removeListener('close', done);
            resolve();
          };
          stream.on('drain', done);
          stream.on('error', done);
          stream.on('close', done);
        }),
    );
  return Promise.all(waits);
}

// ---- loading the handler ----------------------------------------------------------------

async function importFile(file) {
  const { pathToFileURL } = require('url');
  return import(pathToFileURL(file).href);
}

async function loadModule(file) {
  if (file.endsWith('.mjs')) return importFile(file);
  try {
    return require(file);
  } catch (err) {
    if (err && REQUIRE_FAILED_ESM.has(err.code)) return importFile(file); // "type": "module"
    throw err;
  }
}

function firstLine(text) {
  return safeString(text).split('\n')[0];
}

async function loadHandler(spec, taskRoot) {
  const slash = spec.lastIndexOf('/');
  const base = spec.slice(slash + 1);
  const dot = base.indexOf('.');
  if (dot <= 0 || dot === base.length - 1) {
    const message = `Bad handler '${spec}': expected file.function`;
    throw new Fault('Runtime.MalformedHandlerName', message);
  }
  const moduleName = spec.slice(0, slash + 1) + base.slice(0, dot);
  const functionPath = base.slice(dot + 1).split('.');
  const stem = path.resolve(taskRoot, moduleName);
  const file = EXTENSIONS.map((ext) => stem + ext).find((candidate) => fs.existsSync(candidate));
  if (file === undefined) {
    throw new Fault(
      'Runtime.ImportModuleError',
      `Unable to import module '${moduleName}': ` +
        `no ${EXTENSIONS.map((e) => moduleName + e).join(', ')} in ${taskRoot}`,
    );
  }
  let mod;
  try {
    mod = await loadModule(file);
  } catch (err) {
    // A compile error comes from Node's loader alone; a SyntaxError that module code threw
    // (JSON.parse...) has the user's frames and keeps its own name, as any other error.
    if (err instanceof SyntaxError && userFrames(err.stack).length === 0) {
      const where = syntaxLocation(err.stack);
      const at = where.length ? where[0] : file; // ES modules: Node 20 gives no line
      const message = `Syntax error in module '${moduleName}': ${err.message} (${at})`;
      throw new Fault('Runtime.UserCodeSyntaxError', message, where);
    }
    if (err && MODULE_NOT_FOUND.has(err.code)) {
      const message = `Unable to import module '${moduleName}': ${firstLine(err.message)}`;
      throw new Fault('Runtime.ImportModuleError', message, userFrames(err.stack));
    }
    throw err;
  }
  let target = mod;
  for (const key of functionPath) target = target == null ? undefined : target[key];
  const defaultExport = mod && mod.default;
  if (typeof target !== 'function' && defaultExport !== null && typeof defaultExport === 'object') {
    // an ES module importing CommonJS code: its exports are the default export
    target = defaultExport;
    for (const key of functionPath) target = target == null ? undefined : target[key];
  }
  if (typeof target !== 'function') {
    const message = `Handler '${functionPath.join('.')}' missing on module '${moduleName}'`;
    throw new Fault('Runtime.HandlerNotFound', message);
  }
  return target;
}

// ---- one call ---------------------------------------------------------------------------

/**
 * Run the handler; resolve with `{failed, value}` or `{failed, error}`, whichever way
 * it answers first (promise, callback, context.done/succeed/fail, plain return value).
 */
function runHandler(handler, event, context) {
  let resolve;
  const outcome = new Promise((r) => {
    resolve = r;
  });
  let finished = false;
  let deferred = null; // a callback's answer, held until the event loop is empty
  const finish = (result) => {
    if (finished) return;
    finished = true;
    process.removeListener('beforeExit', onEmptyLoop);
    resolve(result);
  };
  const answer = (error, value) =>
    error !== null && error !== undefined ? { failed: true, error } : { failed: false, value };
  function onEmptyLoop() {
    finish(deferred || { failed: false, value: null }); // nothing answered: null, as Lambda
  }
  const callback = (error, value) => {
    if (finished || deferred) return;
    if (context.callbackWaitsForEmptyEventLoop) deferred = answer(error, value);
    else finish(answer(error, value));
  };
  context.done = (error, value) => finish(answer(error, value));
  context.succeed = (value) => finish(answer(null, value));
  context.fail = (error) => finish(answer(error == null ? 'failed' : error));
  process.on('beforeExit', onEmptyLoop);
  let returned;
  try {
    returned = handler(event, context, callback);
  } catch (err) {
    finish({ failed: true, error: err });
    return outcome;
  }
  if (returned !== null && returned !== undefined && typeof returned.then === 'function') {
    Promise.resolve(returned).then(
      (value) => finish({ failed: false, value }),
      (error) => finish({ failed: true, error }),
    );
  } else if (returned !== undefined && handler.length < 3) {
    finish({ failed: false, value: returned }); // a synchronous handler's return value
  }
  return outcome;
}

function marshal(value) {
  let text;
  try {
    text = JSON.stringify(value === undefined ? null : value);
  } catch (err) {
    throw new Fault('Runtime.MarshalError', `Unable to marshal response: ${err.message}`);
  }
  if (text === undefined) {
    const message = `Unable to marshal response: a ${typeof value} is not JSON serializable`;
    throw new Fault('Runtime.MarshalError', message);
  }
  return Buffer.from(text, 'utf8');
}

async function invoke(fn, handler, requestId, headers, body) {
  const context = new Context(fn, requestId, headers, Date.now());
  let event;
  try {
    event = body.length ? JSON.parse(body.toString('utf8')) : {};
  } catch (err) {
    throw new Fault('Runtime.UnmarshalError', `Unable to unmarshal input: ${err.message}`);
  }
  const result = await runHandler(handler, event, context);
  if (result.failed) throw result.error;
  return marshal(result.value);
}

// ---- the loop ---------------------------------------------------------------------------

/** Whether the handler is loaded (a crash before that is an init error). */
const state = { ready: false, client: null };

async function postError(client, urlPath, error, errorTypeHeader) {
  await flushStdio();
  const body = Buffer.from(JSON.stringify(error), 'utf8');
  return client.request('POST', urlPath, body, {
    'Content-Type': JSON_TYPE,
    'Lambda-Runtime-Function-Error-Type': errorTypeHeader,
  });
}

async function serve(client, fn, handler) {
  for (;;) {
    const next = await client.request('GET', NEXT);
    if (next.status !== 200) {
      const text = next.body.toString('utf8', 0, 500);
      throw new Error(`Runtime API answered ${next.status} to next: ${text}`);
    }
    const headers = next.headers;
    const requestId = headers['lambda-runtime-aws-request-id'] || '';
    const traceId = headers['lambda-runtime-trace-id'];
    if (traceId) env._X_AMZN_TRACE_ID = traceId;
    else delete env._X_AMZN_TRACE_ID;
    let urlPath;
    let payload;
    let extra;
    try {
      payload = await invoke(fn, handler, requestId, headers, next.body);
      urlPath = `${API}/invocation/${requestId}/response`;
      extra = { 'Content-Type': JSON_TYPE };
    } catch (err) {
      const error = { ...toPayload(err), requestId };
      payload = Buffer.from(JSON.stringify(error), 'utf8');
      urlPath = `${API}/invocation/${requestId}/error`;
      extra = { 'Content-Type': JSON_TYPE, 'Lambda-Runtime-Function-Error-Type': 'Unhandled' };
    }
    await flushStdio();
    const answer = await client.request('POST', urlPath, payload, extra);
    if (answer.status >= 300) {
      const text = answer.body.toString('utf8', 0, 500);
      process.stderr.write(`[WARN] Runtime API answered ${answer.status} to ${urlPath}: ${text}\n`);
    }
  }
}

/**
 * An uncaught exception or unhandled rejection: the process's state is suspect, so it ends
 * (as on Lambda). During init the error is the init error. During a call it is written to
 * stderr (tagged with the call's request id) and the call fails with `Runtime.ExitError`:
 * posting it as the call's answer would let the platform hand the next call to a process
 * that is about to exit.
 */
async function crash(err, rejection) {
  let error;
  if (rejection) {
    const text = isError(err) ? `${errorName(err)}: ${safeString(err.message)}` : safeString(err);
    const frames = isError(err) ? userFrames(err.stack) : [];
    error = toPayload(new Fault('Runtime.UnhandledPromiseRejection', text, frames));
  } else {
    error = toPayload(err);
  }
  if (state.client && !state.ready) {
    try {
      await postError(state.client, `${API}/init/error`, error, error.errorType);
    } catch (_ignored) {
      // the Runtime API is gone: the exit below is all that is left to do
    }
  }
  await flushStdio();
  process.exit(rejection ? 128 : 129);
}

async function main() {
  process.on('uncaughtException', (err) => crash(err, false));
  process.on('unhandledRejection', (reason) => crash(reason, true));
  const fn = describeFunction(env);
  const taskRoot = env.LAMBDA_TASK_ROOT || process.cwd();
  process.chdir(taskRoot);
  const client = new Client(env);
  state.client = client;
  let handler;
  try {
    handler = await loadHandler(env._HANDLER || '', taskRoot);
  } catch (err) {
    const error = toPayload(err);
    try {
      await postError(client, `${API}/init/error`, error, error.errorType);
    } finally {
      await flushStdio();
      process.exit(1);
    }
  }
  state.ready = true;
  try {
    await serve(client, fn, handler);
  } catch (err) {
    // the Runtime API is gone even after a retry: the instance ends
    process.stderr.write(`[ERROR] Runtime API unreachable: ${err && err.message}\n`);
    await flushStdio();
    process.exit(1);
  }
}

main();

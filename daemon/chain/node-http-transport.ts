/**
 * A viem transport for JSON-RPC over HTTP(S) on `node:http`/`node:https`, with a
 * keep-alive agent and JSON-RPC batching of the requests made in the same turn of
 * the event loop. viem's `http()` transport goes through `fetch` and `Headers`, which
 * load Node's bundled undici and compile its WebAssembly HTTP parser: about 10 MB
 * resident for the life of a daemon meant to idle under 100 MB. Answers are mapped to
 * the errors viem's own HTTP transport throws (`RpcRequestError`, `HttpRequestError`,
 * `TimeoutError`), so viem's retries and error classes work unchanged.
 */
import type { Agent, IncomingMessage, RequestOptions } from 'node:http'
import { custom, HttpRequestError, RpcRequestError, TimeoutError, type CustomTransport } from 'viem'

/** Options of {@link nodeHttp}. */
export interface NodeHttpTransportOptions {
  /** Time limit of one HTTP request (a whole batch), in ms. Default 10 s. */
  timeoutMs?: number
  /** Retries of a failed request by viem (exponential backoff from 150 ms). Default 3 (viem's). */
  retryCount?: number
  /** Most requests sent in one JSON-RPC batch. Default 100. */
  batchSize?: number
  /** Largest response body accepted, in bytes. Default 16 MiB. */
  maxResponseBytes?: number
}

/** One JSON-RPC request in flight. */
interface Pending {
  body: { jsonrpc: '2.0', id: number, method: string, params?: unknown }
  resolve: (value: unknown) => void
  reject: (err: unknown) => void
}

/** A JSON-RPC response object. */
interface RpcResponse {
  id?: unknown
  result?: unknown
  error?: { code: number, message: string, data?: unknown }
}

const DEFAULT_TIMEOUT_MS = 10_000
const DEFAULT_BATCH_SIZE = 100
const DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024 * 1024

/** The HTTP(S) JSON-RPC transport for `url` (credentials in the URL become basic auth). */
export function nodeHttp (url: string, options: NodeHttpTransportOptions = {}): CustomTransport {
  const target = new URL(url)
  if (target.protocol !== 'http:' && target.protocol !== 'https:') throw new TypeError(`RPC URL must be http(s), got ${target.protocol}`)
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS
  const batchSize = options.batchSize ?? DEFAULT_BATCH_SIZE
  const maxResponseBytes = options.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES
  const shownUrl = `${target.protocol}//${target.host}${target.pathname}${target.search}`
  const auth = target.username === '' ? undefined : `${decodeURIComponent(target.username)}:${decodeURIComponent(target.password)}`
  let lib: Promise<{ request: typeof import('node:http').request, agent: Agent }> | undefined
  // node:https (and TLS) only load for an https URL
  const load = async (): Promise<{ request: typeof import('node:http').request, agent: Agent }> => {
    const mod = target.protocol === 'https:' ? await import('node:https') : await import('node:http')
    return { request: mod.request, agent: new mod.Agent({ keepAlive: true, maxSockets: 4 }) }
  }

  let nextId = 0
  let queue: Pending[] = []
  let scheduled = false

  const flush = (): void => {
    scheduled = false
    while (queue.length > 0) {
      const batch = queue.splice(0, batchSize)
      void send(batch)
    }
  }

  const send = async (batch: Pending[]): Promise<void> => {
    const single = batch.length === 1
    const body = single ? batch[0].body : batch.map((p) => p.body)
    let status: number
    let text: string
    try {
      lib ??= load()
      const { request, agent } = await lib
      ;({ status, text } = await post(request, {
        protocol: target.protocol,
        hostname: target.hostname.replace(/^\[|\]$/g, ''),
        port: target.port,
        path: `${target.pathname}${target.search}`,
        method: 'POST',
        agent,
        auth,
        headers: { 'content-type': 'application/json', accept: 'application/json' }
      }, JSON.stringify(body), timeoutMs, maxResponseBytes))
    } catch (err) {
      const error = err === TIMED_OUT ? new TimeoutError({ body, url: shownUrl }) : new HttpRequestError({ body, cause: err as Error, url: shownUrl })
      for (const p of batch) p.reject(error)
      return
    }
    let data: unknown
    try {
      data = JSON.parse(text)
    } catch {
      data = undefined
    }
    const ok = status >= 200 && status < 300
    // a server that rejects a whole batch answers with one error object (or a one-element array)
    const whole = !Array.isArray(data) ? data : (data.length === 1 && !single ? data[0] : undefined)
    if (!ok || data === undefined || (!single && !Array.isArray(data))) {
      const error = isRpcResponseError(whole)
        ? new RpcRequestError({ body, error: whole.error, status, url: shownUrl })
        : new HttpRequestError({ body, details: text.slice(0, 500) || `HTTP ${status}`, status, url: shownUrl })
      for (const p of batch) p.reject(error)
      return
    }
    const answers = single ? [data as RpcResponse] : data as RpcResponse[]
    const byId = new Map(answers.map((a) => [a?.id, a]))
    for (const p of batch) {
      const answer = single ? answers[0] : byId.get(p.body.id)
      if (answer === undefined) p.reject(new HttpRequestError({ body: p.body, details: `no response with id ${p.body.id} in the batch`, status, url: shownUrl }))
      // as viem's HTTP transport: an error answer in a 2xx response carries no status (so retries go by its code)
      else if (answer.error !== undefined) p.reject(new RpcRequestError({ body: p.body, error: answer.error, url: shownUrl }))
      else p.resolve(answer.result)
    }
  }

  return custom({
    async request ({ method, params }: { method: string, params?: unknown }): Promise<unknown> {
      return await new Promise((resolve, reject) => {
        queue.push({ body: { jsonrpc: '2.0', id: ++nextId, method, ...(params === undefined ? {} : { params }) }, resolve, reject })
        if (!scheduled) {
          scheduled = true
          setImmediate(flush)
        }
      })
    }
  }, { key: 'http', name: 'HTTP JSON-RPC (node:http)', retryCount: options.retryCount })
}

const TIMED_OUT = new Error('timed out')

function isRpcResponseError (value: unknown): value is { error: { code: number, message: string, data?: unknown } } {
  const error = (value as RpcResponse | undefined)?.error
  return typeof error === 'object' && error !== null && typeof error.code === 'number' && typeof error.message === 'string'
}

/** POSTs `body`; resolves with the status and the body text, rejects with {@link TIMED_OUT} after `timeoutMs`. */
async function post (request: typeof import('node:http').request, opts: RequestOptions, body: string, timeoutMs: number, maxBytes: number): Promise<{ status: number, text: string }> {
  return await new Promise((resolve, reject) => {
    let settled = false
    const finish = (err: Error | undefined, result?: { status: number, text: string }): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      if (err === undefined) {
        resolve(result as { status: number, text: string })
        return
      }
      // destroyed without an error argument: no 'error' is emitted on a socket nobody listens to
      req.destroy()
      reject(err)
    }
    const req = request({ ...opts, headers: { ...opts.headers, 'content-length': Buffer.byteLength(body) } }, (res: IncomingMessage) => {
      const chunks: Buffer[] = []
      let size = 0
      res.on('data', (chunk: Buffer) => {
        size += chunk.length
        if (size > maxBytes) finish(new Error(`response larger than ${maxBytes} bytes`))
        else chunks.push(chunk)
      })
      res.on('end', () => { finish(undefined, { status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }) })
      res.on('error', (err) => { finish(err) })
    })
    const timer = setTimeout(() => { finish(TIMED_OUT) }, timeoutMs)
    req.on('error', (err) => { finish(err) })
    req.end(body)
  })
}

/**
 * A small JSON-over-HTTP service on `node:http` for the seller's control API and
 * the metrics listener: a fixed route table, three access levels, bounded headers,
 * bodies, connections and handler time, and errors as JSON `{ code, message }`.
 *
 * Access: `read` routes answer whoever reaches the listener, which binds to a
 * loopback address unless the operator set `allowRemote`; `write` routes always need
 * `Authorization: Bearer <token>`. On a loopback listener a request whose `Host` is
 * not a loopback name is refused, so a web page cannot reach it through DNS rebinding.
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import ipaddr from 'ipaddr.js'
import type { Logger } from 'pino'
import type { TSchema, Static } from '@sinclair/typebox'
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler'
import { SparebandError } from '../../protocol/errors.ts'

/** An error answered to the client with an HTTP status and a JSON `{ code, message }` body. */
export class ApiError extends SparebandError {
  /** HTTP status of the answer. */
  readonly status: number

  constructor (status: number, code: string, message: string, options?: { cause?: unknown }) {
    super(code, message, options)
    this.status = status
  }
}

/** Raised when a listener cannot be opened, or would be opened where it must not. */
export class ApiListenError extends SparebandError {
  constructor (code: 'ERR_API_LISTEN' | 'ERR_API_NOT_LOOPBACK', message: string, options?: { cause?: unknown }) {
    super(code, message, options)
  }
}

/** Who may call a route; see the module comment. */
export type RouteAccess = 'read' | 'write'

/** What a route handler answers. */
export type RouteResult =
  | { kind: 'json', body: unknown, status?: number }
  | { kind: 'text', body: string, contentType: string, headers?: Record<string, string> }

/** One route of a {@link HttpService}. */
export interface Route<S extends TSchema = TSchema> {
  method: 'GET' | 'POST'
  path: string
  access: RouteAccess
  /** Schema of the JSON body (POST); an empty body is validated as `{}`. */
  body?: S
  /** Most time the handler may take before the client gets `504 ERR_API_TIMEOUT`. Default 15 s. */
  timeoutMs?: number
  handler: (ctx: { url: URL, body: Static<S> }) => Promise<RouteResult>
}

/** Options of {@link HttpService}. */
export interface HttpServiceInit {
  /** `host:port` (IPv6 in brackets); port 0 picks a free port. */
  listen: string
  /** Allow a non-loopback `listen` address (its reads are open to whoever reaches it). */
  allowRemote: boolean
  routes: readonly Route<any>[]
  /** Bearer token of the `write` routes. */
  token?: string
  /** Name of the listener in errors and logs, e.g. "control API". */
  name: string
  /** Config field that sets `listen`, named in errors. */
  listenField: string
  logger: Logger
  /** Largest request body. Default 4 KiB. */
  maxBodyBytes?: number
  /** Most concurrent connections. Default 64. */
  maxConnections?: number
}

const DEFAULT_MAX_BODY_BYTES = 4096
const DEFAULT_MAX_CONNECTIONS = 64
const DEFAULT_HANDLER_TIMEOUT_MS = 15_000

/** `host:port` split; IPv6 hosts come without their brackets. */
export function parseHostPort (value: string): { host: string, port: number } {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):([0-9]{1,5})$/.exec(value)
  const port = match === null ? NaN : Number(match[3])
  if (match === null || port > 65535) throw new ApiListenError('ERR_API_LISTEN', `"${value}" is not host:port (e.g. 127.0.0.1:8742 or [::1]:8742)`)
  return { host: match[1] ?? match[2], port }
}

/** Whether `host` (an IP literal or `localhost`) names this machine's loopback. */
export function isLoopbackHost (host: string): boolean {
  if (host.toLowerCase() === 'localhost') return true
  if (!ipaddr.isValid(host)) return false
  return ipaddr.process(host).range() === 'loopback'
}

/** The URL a local client uses for a listener bound to `host:port` (wildcards mean loopback). */
export function localUrl (host: string, port: number): string {
  const h = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host
  return `http://${h.includes(':') ? `[${h}]` : h}:${port}/`
}

/** A running JSON-over-HTTP listener; see the module comment. */
export class HttpService {
  readonly #init: HttpServiceInit
  readonly #log: Logger
  readonly #routes: Map<string, Map<string, { route: Route<any>, check?: TypeCheck<TSchema> }>>
  readonly #tokenDigest: Buffer | undefined
  readonly #loopbackOnly: boolean
  readonly #server: Server
  readonly #host: string
  readonly #port: number
  #url: string | undefined

  constructor (init: HttpServiceInit) {
    this.#init = init
    this.#log = init.logger.child({ component: 'http', listener: init.name })
    const { host, port } = parseHostPort(init.listen)
    this.#host = host
    this.#port = port
    this.#loopbackOnly = isLoopbackHost(host)
    if (!this.#loopbackOnly && !init.allowRemote) {
      throw new ApiListenError('ERR_API_NOT_LOOPBACK', `the ${init.name} would listen on ${init.listen}, which is not a loopback address; use 127.0.0.1 or set ${init.listenField === 'apiListen' ? 'apiAllowRemote: true' : 'it deliberately'} in the config if other machines must reach it`)
    }
    if (init.routes.some((r) => r.access === 'write') && (init.token === undefined || init.token.length < 32)) {
      throw new TypeError('write routes need a token of at least 32 characters')
    }
    this.#tokenDigest = init.token === undefined ? undefined : digest(init.token)
    this.#routes = new Map()
    for (const route of init.routes) {
      const byMethod = this.#routes.get(route.path) ?? new Map()
      byMethod.set(route.method, { route, check: route.body === undefined ? undefined : TypeCompiler.Compile(route.body) })
      this.#routes.set(route.path, byMethod)
    }
    this.#server = createServer({ maxHeaderSize: 16 * 1024, requestTimeout: 10_000, headersTimeout: 5_000, keepAliveTimeout: 5_000 }, (req, res) => {
      void this.#handle(req, res)
    })
    this.#server.maxConnections = init.maxConnections ?? DEFAULT_MAX_CONNECTIONS
  }

  /** Base URL for local clients, e.g. `http://127.0.0.1:8742/` (after {@link start}). */
  get url (): string {
    if (this.#url === undefined) throw new Error('the listener is not started')
    return this.#url
  }

  /** Opens the listener. */
  async start (): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => {
        const why = err.code === 'EADDRINUSE'
          ? 'the port is in use (is another spareband running?)'
          : err.code === 'EADDRNOTAVAIL' ? 'no interface of this machine has that address' : err.message
        reject(new ApiListenError('ERR_API_LISTEN', `cannot open the ${this.#init.name} on ${this.#init.listen}: ${why}; stop the other process or set ${this.#init.listenField} in the config`, { cause: err }))
      }
      this.#server.once('error', onError)
      this.#server.listen(this.#port, this.#host, () => {
        this.#server.off('error', onError)
        resolve()
      })
    })
    const address = this.#server.address() as AddressInfo
    this.#url = localUrl(this.#host, address.port)
    this.#log.info({ url: this.#url }, `${this.#init.name} listening`)
  }

  /** Closes the listener and every open connection. */
  async stop (): Promise<void> {
    if (!this.#server.listening) return
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()))
    this.#server.closeAllConnections()
    await closed
  }

  async #handle (req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const url = new URL(req.url ?? '/', 'http://api.invalid')
      const byMethod = this.#routes.get(url.pathname)
      if (byMethod === undefined) throw new ApiError(404, 'ERR_NOT_FOUND', `no route ${url.pathname}; see /api/status, /api/channels, /api/earnings, /api/sessions, /metrics`)
      const entry = byMethod.get(req.method ?? '')
      if (entry === undefined) {
        res.setHeader('Allow', [...byMethod.keys()].join(', '))
        throw new ApiError(405, 'ERR_METHOD_NOT_ALLOWED', `${req.method ?? '?'} is not allowed on ${url.pathname}; use ${[...byMethod.keys()].join(' or ')}`)
      }
      this.#authorize(req, entry.route.access)
      const body = entry.check === undefined ? undefined : await this.#readBody(req, entry.check)
      const result = await withTimeout(entry.route.handler({ url, body }), entry.route.timeoutMs ?? DEFAULT_HANDLER_TIMEOUT_MS)
      if (result.kind === 'json') send(res, result.status ?? 200, 'application/json; charset=utf-8', toJson(result.body))
      else send(res, 200, result.contentType, result.body, result.headers)
    } catch (err: any) {
      const apiError = err instanceof ApiError
        ? err
        : err instanceof SparebandError
          ? new ApiError(500, err.code, err.message)
          : new ApiError(500, 'ERR_INTERNAL', `internal error: ${String(err?.message ?? err).slice(0, 300)}; see the daemon log`)
      if (apiError.status >= 500) this.#log.warn({ err, code: apiError.code, path: req.url }, 'request failed')
      // a refused request's unread body is not worth reading: answer, then close the connection
      const close: Record<string, string> = req.complete ? {} : { Connection: 'close' }
      if (!res.headersSent) send(res, apiError.status, 'application/json; charset=utf-8', toJson({ code: apiError.code, message: apiError.message }), close)
      else res.destroy()
    }
  }

  #authorize (req: IncomingMessage, access: RouteAccess): void {
    if (this.#loopbackOnly && !hostHeaderIsLoopback(req.headers.host)) {
      throw new ApiError(403, 'ERR_API_HOST', 'the control API only answers requests addressed to 127.0.0.1, [::1] or localhost')
    }
    if (access === 'read') return
    const header = req.headers.authorization
    const presented = header?.startsWith('Bearer ') === true ? header.slice(7).trim() : undefined
    if (presented === undefined || this.#tokenDigest === undefined || !timingSafeEqual(digest(presented), this.#tokenDigest)) {
      throw new ApiError(401, 'ERR_API_UNAUTHORIZED', 'this request needs "Authorization: Bearer <token>" with the token from <dataDir>/api-token (the spareband CLI sends it)')
    }
  }

  async #readBody (req: IncomingMessage, check: TypeCheck<TSchema>): Promise<unknown> {
    const max = this.#init.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES
    const declared = Number(req.headers['content-length'] ?? 0)
    if (declared > max) throw new ApiError(413, 'ERR_API_BODY_TOO_LARGE', `request bodies are limited to ${max} bytes`)
    const chunks: Buffer[] = []
    let size = 0
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length
      if (size > max) throw new ApiError(413, 'ERR_API_BODY_TOO_LARGE', `request bodies are limited to ${max} bytes`)
      chunks.push(chunk)
    }
    let value: unknown = {}
    if (size > 0) {
      if (!/^application\/json\b/i.test(req.headers['content-type'] ?? '')) throw new ApiError(415, 'ERR_API_BAD_REQUEST', 'send the body as Content-Type: application/json')
      try {
        value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(chunks)))
      } catch {
        throw new ApiError(400, 'ERR_API_BAD_REQUEST', 'the body is not valid UTF-8 JSON')
      }
    }
    if (!check.Check(value)) {
      const first = [...check.Errors(value)][0]
      throw new ApiError(400, 'ERR_API_BAD_REQUEST', `invalid body: ${first === undefined ? 'rejected' : `${first.path === '' ? '(top level)' : first.path}: ${first.message}`}`)
    }
    return value
  }
}

/** JSON with bigints as decimal strings. */
export function toJson (value: unknown): string {
  return JSON.stringify(value, (_k, v) => typeof v === 'bigint' ? v.toString() : v)
}

function send (res: ServerResponse, status: number, contentType: string, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, {
    'Content-Type': contentType,
    'Cache-Control': 'no-store',
    'X-Content-Type-Options': 'nosniff',
    'Referrer-Policy': 'no-referrer',
    ...headers
  })
  res.end(body)
}

function digest (token: string): Buffer {
  return createHash('sha256').update(token).digest()
}

function hostHeaderIsLoopback (host: string | undefined): boolean {
  if (host === undefined) return true
  const match = /^(?:\[([^\]]+)\]|([^:]+))(?::[0-9]{1,5})?$/.exec(host)
  return match !== null && isLoopbackHost(match[1] ?? match[2])
}

async function withTimeout<T> (work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new ApiError(504, 'ERR_API_TIMEOUT', `the daemon did not finish within ${Math.round(ms / 1000)} s; the work goes on in the background — look again in a moment`)), ms)
  })
  try {
    return await Promise.race([work, timeout])
  } finally {
    clearTimeout(timer)
  }
}

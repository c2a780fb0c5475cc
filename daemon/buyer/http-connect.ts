/**
 * The buyer's local HTTP CONNECT proxy: `CONNECT host:port HTTP/1.1` is
 * answered with `200 Connection Established` and a raw tunnel, or with an
 * error status whose `X-Spareband-Error` header carries the typed code.
 */
import { isIPv6 } from 'node:net'
import { SparebandError } from '../../protocol/errors.ts'
import { readHandshake, HandshakeTooLargeError, type Parsed } from './handshake-reader.ts'
import { LocalProxy, ProxyHandshakeTimeoutError, type LocalProxyInit, type ProxyHandshake } from './local-proxy.ts'
import { failureKind, RelayRefusedError, type FailureKind, type RelayTarget } from './relay-dialer.ts'
import type { Socket } from 'node:net'

/** Header of an error response carrying the stable code: the seller's refusal code (e.g. `ERR_EXIT_POLICY`) or the proxy's own. */
export const ERROR_CODE_HEADER = 'X-Spareband-Error'

/** Largest request head (request line and headers) accepted. */
const MAX_HEAD_BYTES = 8 * 1024

/** An HTTP client sent a request the proxy cannot serve; `status` is the response status. */
export class HttpConnectRequestError extends SparebandError {
  /** HTTP status to answer with. */
  readonly status: number

  constructor (code: string, message: string, status: number) {
    super(code, message)
    this.status = status
  }
}

/** Parses an HTTP/1.x request head that must be `CONNECT host:port`; returns the target. */
export function parseConnectRequest (buf: Buffer): Parsed<RelayTarget> | undefined {
  const text = buf.toString('latin1')
  const end = /\r?\n\r?\n/.exec(text)
  if (end == null) return undefined
  const requestLine = text.slice(0, text.search(/\r?\n/))
  const match = /^([A-Z]+) (\S+) HTTP\/1\.[01]$/.exec(requestLine)
  if (match == null) throw new HttpConnectRequestError('ERR_HTTP_MALFORMED', 'the HTTP client sent a malformed request line', 400)
  const [, method, authority] = match
  if (method !== 'CONNECT') {
    throw new HttpConnectRequestError('ERR_HTTP_METHOD', `this proxy only tunnels with CONNECT, not ${method}; configure the client to use it as an HTTPS proxy`, 405)
  }
  return { value: parseAuthority(authority), consumed: end.index + end[0].length }
}

/** Parses `host:port` or `[ipv6]:port`. */
function parseAuthority (authority: string): RelayTarget {
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9_.-]+)):(\d{1,5})$/.exec(authority)
  const port = Number(match?.[3])
  const host = match?.[1] ?? match?.[2]
  if (match == null || host == null || port < 1 || port > 65535 || (match[1] != null && !isIPv6(match[1]))) {
    throw new HttpConnectRequestError('ERR_HTTP_AUTHORITY', `"${authority.slice(0, 64)}" is not a host:port to connect to`, 400)
  }
  return { host, port }
}

const STATUS_OF_KIND: Record<FailureKind, number> = {
  policy: 403,
  session: 403,
  dns: 502,
  refused: 502,
  unreachable: 502,
  seller: 502,
  limit: 503,
  timeout: 504,
  other: 502
}

const REASONS: Record<number, string> = {
  400: 'Bad Request',
  403: 'Forbidden',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  431: 'Request Header Fields Too Large',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout'
}

/** The HTTP status that tells a client why its tunnel failed. */
export function httpStatusFor (err: unknown): number {
  if (err instanceof HttpConnectRequestError) return err.status
  if (err instanceof HandshakeTooLargeError) return 431
  if (err instanceof ProxyHandshakeTimeoutError) return err.phase === 'request' ? 408 : 504
  return STATUS_OF_KIND[failureKind(err)]
}

function errorResponse (err: unknown): string {
  const status = httpStatusFor(err)
  const code = err instanceof RelayRefusedError ? err.refusal : err instanceof SparebandError ? err.code : 'ERR_PROXY_INTERNAL'
  const body = `${err instanceof Error ? err.message : String(err)}\n`
  const headers = [
    `HTTP/1.1 ${status} ${REASONS[status] ?? 'Error'}`,
    `${ERROR_CODE_HEADER}: ${code}`,
    ...(status === 405 ? ['Allow: CONNECT'] : []),
    'Content-Type: text/plain; charset=utf-8',
    `Content-Length: ${Buffer.byteLength(body)}`,
    'Connection: close'
  ]
  return `${headers.join('\r\n')}\r\n\r\n${body}`
}

/** The HTTP CONNECT side of a client connection. */
export const httpConnectHandshake: ProxyHandshake = {
  name: 'http-connect',
  async readRequest (socket: Socket, signal: AbortSignal): Promise<RelayTarget> {
    return await readHandshake(socket, parseConnectRequest, MAX_HEAD_BYTES, signal)
  },
  replySuccess (socket: Socket): void {
    socket.write('HTTP/1.1 200 Connection Established\r\n\r\n')
  },
  replyFailure (socket: Socket, err: unknown): void {
    if (socket.writableEnded) socket.destroy()
    else socket.end(errorResponse(err))
  }
}

/** Creates the buyer's HTTP CONNECT proxy; call `start()` to listen. */
export function httpConnectProxy (init: LocalProxyInit): LocalProxy {
  return new LocalProxy(httpConnectHandshake, init)
}

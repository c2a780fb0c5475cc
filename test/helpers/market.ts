/**
 * Helpers of the end-to-end market tests: an HTTP client that downloads through a
 * proxy tunnel and, when the tunnel breaks, reissues the request with a Range
 * header from the byte it reached (the file server is `fileServer` of
 * `daemon/local-market.ts`, shared with the demo).
 */
import { request, type IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'

/** Opens a tunnel to the file server through a proxy (SOCKS5 or HTTP CONNECT). */
export type OpenTunnel = () => Promise<Socket>

/** Options of {@link download}. */
export interface DownloadOptions {
  /** Opens a fresh tunnel for each attempt. */
  tunnel: OpenTunnel
  /** `host:port` of the file server, for the Host header. */
  authority: string
  /** First byte to fetch. Default 0. */
  from?: number
  /** Bytes to fetch. Default: to the end. */
  length?: number
  /** Attempts in all (the first and the reissues after a broken tunnel). Default 1. */
  attempts?: number
  /** Called with the running byte count as data arrives. */
  onData?: (received: number) => void
  /** Stop reading for `ms` once `afterBytes` arrived (a slow client: the proxy sees backpressure). */
  stall?: { afterBytes: number, ms: number }
}

/** What {@link download} got. */
export interface Downloaded {
  body: Buffer
  /** Attempts used (1 when the first one completed). */
  attempts: number
}

/**
 * Downloads `/data` through tunnels: when one breaks before the body is
 * complete, the next attempt asks for the rest with a Range header.
 */
export async function download (options: DownloadOptions): Promise<Downloaded> {
  const attempts = options.attempts ?? 1
  const chunks: Buffer[] = []
  let received = 0
  let total: number | undefined = options.length
  const from = options.from ?? 0
  let lastError: unknown
  let stall = options.stall
  for (let attempt = 1; attempt <= attempts; attempt++) {
    try {
      const first = from + received
      const last = total === undefined ? '' : String(from + total - 1)
      const socket = await options.tunnel()
      const res = await get(socket, options.authority, `bytes=${first}-${last}`)
      if (res.statusCode !== 206) throw new Error(`the file server answered ${res.statusCode}`)
      const range = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(res.headers['content-range'] ?? '')
      if (range === null || Number(range[1]) !== first) throw new Error(`unexpected content-range ${res.headers['content-range']}`)
      total ??= Number(range[3]) - from
      await new Promise<void>((resolve, reject) => {
        res.on('data', (chunk: Buffer) => {
          chunks.push(chunk)
          received += chunk.length
          options.onData?.(received)
          if (stall !== undefined && received >= stall.afterBytes) {
            const ms = stall.ms
            stall = undefined
            res.pause()
            setTimeout(() => { res.resume() }, ms)
          }
        })
        const settle = (): void => { res.complete ? resolve() : reject(new Error('the tunnel broke before the body was complete')) }
        res.once('end', settle)
        res.once('close', settle)
        res.once('error', reject)
      })
      if (received >= total) return { body: Buffer.concat(chunks), attempts: attempt }
    } catch (err) {
      lastError = err
    }
  }
  throw new Error(`download incomplete after ${attempts} attempts (${received} of ${total ?? '?'} bytes): ${(lastError as Error)?.message}`)
}

/** Sends `GET /data` with `range` over an open tunnel and resolves with the response head. */
async function get (socket: Socket, authority: string, range: string): Promise<IncomingMessage> {
  return await new Promise<IncomingMessage>((resolve, reject) => {
    const req = request({
      createConnection: () => socket,
      method: 'GET',
      path: '/data',
      headers: { host: authority, range, connection: 'close' }
    }, resolve)
    req.once('error', reject)
    req.end()
    // the proxy handshake helpers leave the tunnel paused; the HTTP parser reads only from a flowing socket
    socket.resume()
  })
}

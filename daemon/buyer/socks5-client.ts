/**
 * A minimal SOCKS5 client (RFC 1928: no authentication, CONNECT), enough for
 * `spareband demo` to fetch through the buyer's own proxy the way any other
 * program would. Names are sent unresolved (the seller resolves them).
 */
import { connect, isIPv4, isIPv6, type Socket } from 'node:net'
import { SparebandError } from '../../protocol/errors.ts'
import type { RelayTarget } from './relay-dialer.ts'

/** The proxy refused the request or broke the protocol; `reply` is its SOCKS5 reply code, if it sent one. */
export class Socks5ConnectError extends SparebandError {
  /** The SOCKS5 reply code (e.g. 2: not allowed by the ruleset), when the proxy answered. */
  readonly reply: number | undefined

  constructor (message: string, reply?: number) {
    super('ERR_SOCKS5_CONNECT', message)
    this.reply = reply
  }
}

/** Options of {@link socks5Connect}. */
export interface Socks5ConnectOptions {
  /** The SOCKS5 proxy. */
  proxy: { host: string, port: number }
  /** Where the proxy should connect. */
  target: RelayTarget
  /** Time for the whole handshake, in ms. Default 15 s. */
  timeoutMs?: number
}

/** Opens a tunnel to `target` through a SOCKS5 proxy; resolves with the socket (paused) once the proxy connected. */
export async function socks5Connect (options: Socks5ConnectOptions): Promise<Socket> {
  const socket = connect({ host: options.proxy.host, port: options.proxy.port, allowHalfOpen: true })
  const timer = setTimeout(() => { socket.destroy(new Socks5ConnectError(`the SOCKS5 proxy did not answer within ${options.timeoutMs ?? 15_000} ms`)) }, options.timeoutMs ?? 15_000)
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve)
      socket.once('error', reject)
    })
    socket.write(Buffer.from([5, 1, 0]))
    const method = await read(socket, 2)
    if (method[0] !== 5 || method[1] !== 0) throw new Socks5ConnectError('the SOCKS5 proxy wants authentication; this client has none')
    socket.write(Buffer.concat([Buffer.from([5, 1, 0]), address(options.target.host), port(options.target.port)]))
    const head = await read(socket, 4)
    if (head[1] !== 0) throw new Socks5ConnectError(`the SOCKS5 proxy refused ${options.target.host}:${options.target.port} with reply ${head[1]}`, head[1])
    const rest = head[3] === 1 ? 4 + 2 : head[3] === 4 ? 16 + 2 : (await read(socket, 1))[0] + 2
    await read(socket, rest)
    return socket
  } catch (err) {
    socket.destroy()
    throw err instanceof Socks5ConnectError ? err : new Socks5ConnectError(`cannot talk to the SOCKS5 proxy at ${options.proxy.host}:${options.proxy.port}: ${(err as Error)?.message ?? err}`)
  } finally {
    clearTimeout(timer)
  }
}

function address (host: string): Buffer {
  if (isIPv4(host)) return Buffer.from([1, ...host.split('.').map(Number)])
  if (isIPv6(host)) throw new Socks5ConnectError('IPv6 literals are not supported by this client; use a name')
  const name = Buffer.from(host, 'latin1')
  if (name.length === 0 || name.length > 255) throw new Socks5ConnectError(`"${host.slice(0, 64)}" is not a host name`)
  return Buffer.concat([Buffer.from([3, name.length]), name])
}

function port (value: number): Buffer {
  const buf = Buffer.alloc(2)
  buf.writeUInt16BE(value)
  return buf
}

/** Reads exactly `n` bytes; what follows is put back and the socket left paused. */
async function read (socket: Socket, n: number): Promise<Buffer> {
  let buffered = Buffer.alloc(0)
  return await new Promise<Buffer>((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      buffered = Buffer.concat([buffered, chunk])
      if (buffered.length < n) return
      done()
      socket.pause()
      if (buffered.length > n) socket.unshift(buffered.subarray(n))
      resolve(buffered.subarray(0, n))
    }
    const onEnd = (): void => { done(); reject(new Socks5ConnectError('the SOCKS5 proxy closed the connection during the handshake')) }
    const onError = (err: Error): void => { done(); reject(err) }
    const done = (): void => {
      socket.off('data', onData)
      socket.off('end', onEnd)
      socket.off('error', onError)
    }
    socket.on('data', onData)
    socket.once('end', onEnd)
    socket.once('error', onError)
    socket.resume()
  })
}

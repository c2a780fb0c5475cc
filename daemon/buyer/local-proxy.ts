/**
 * The TCP server shared by the buyer's local proxies (SOCKS5, HTTP CONNECT):
 * accepts clients on loopback, runs the proxy's handshake with a time limit,
 * opens a relay stream to the seller through a {@link RelayDialer}, answers
 * the client and pipes bytes both ways until the connection ends.
 */
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net'
import { pipeStreamSocket, type PipeDirection } from '../relay/pipe.ts'
import { HandshakeEndedError } from './handshake-reader.ts'
import { SparebandError } from '../../protocol/errors.ts'
import type { RelayDialer, RelayTarget } from './relay-dialer.ts'
import type { Logger } from 'pino'

/** Which way metered bytes went: `up` from the client towards the target, `down` back. */
export type ProxyDirection = 'up' | 'down'

/** One proxy protocol's side of a client connection. */
export interface ProxyHandshake {
  /** Short protocol name for logs, e.g. `socks5`. */
  readonly name: string
  /** Reads the client's request (answering any negotiation on the way) and returns where to connect. */
  readRequest: (socket: Socket, signal: AbortSignal) => Promise<RelayTarget>
  /** Tells the client its connection is established. */
  replySuccess: (socket: Socket) => void
  /** Tells the client why its request failed, if the protocol can say so, and ends the connection. */
  replyFailure: (socket: Socket, err: unknown) => void
}

/** Options of {@link LocalProxy}. */
export interface LocalProxyInit {
  /** Opens relay streams to the seller. */
  dialer: RelayDialer
  /** Address to listen on. Default `127.0.0.1`; the proxies have no authentication, keep them on loopback. */
  host?: string
  /** Port to listen on. Default 0 (any free port). */
  port?: number
  /** Time the client has to complete its request, and the seller to accept it, in ms. Default 10 s. */
  handshakeTimeoutMs?: number
  /** Close a connection when no byte moved either way for this long, in ms. Default 5 min. */
  idleTimeoutMs?: number
  /** Most simultaneous client connections; more are closed at once. Default 256. */
  maxConnections?: number
  /** Called with every byte count forwarded, for the buyer's own meter. */
  onForward?: (bytes: number, direction: ProxyDirection) => void
  /** Parent logger. */
  logger: Logger
}

/** The proxy was asked to listen while already listening, or similar misuse. */
export class ProxyStateError extends SparebandError {
  constructor (message: string) {
    super('ERR_PROXY_STATE', message)
  }
}

/** The client did not complete its request (`phase: 'request'`), or the seller did not connect it (`phase: 'relay'`), in time. */
export class ProxyHandshakeTimeoutError extends SparebandError {
  /** Who was too slow: the client sending its request, or the seller connecting it. */
  readonly phase: 'request' | 'relay'

  constructor (timeoutMs: number, phase: 'request' | 'relay') {
    super('ERR_PROXY_HANDSHAKE_TIMEOUT', phase === 'request'
      ? `the client did not complete its proxy request within ${timeoutMs} ms`
      : `the seller did not connect the target within ${timeoutMs} ms; retry, or pick another seller`)
    this.phase = phase
  }
}

const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000
const DEFAULT_MAX_CONNECTIONS = 256
/** How long a client may keep its side open after a failure answer. */
const FAILURE_LINGER_MS = 2_000

/** A local proxy server speaking one {@link ProxyHandshake}. */
export class LocalProxy {
  readonly #init: LocalProxyInit
  readonly #handshake: ProxyHandshake
  readonly #log: Logger
  readonly #sockets = new Set<Socket>()
  #server: Server | undefined
  #stopping = new AbortController()

  constructor (handshake: ProxyHandshake, init: LocalProxyInit) {
    this.#init = init
    this.#handshake = handshake
    this.#log = init.logger.child({ component: `proxy-${handshake.name}` })
  }

  /** Starts listening; resolves once the port is bound. */
  async start (): Promise<void> {
    if (this.#server != null) throw new ProxyStateError(`the ${this.#handshake.name} proxy is already listening`)
    this.#stopping = new AbortController()
    const server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => { this.#accept(socket) })
    server.maxConnections = this.#init.maxConnections ?? DEFAULT_MAX_CONNECTIONS
    const listening = Promise.withResolvers<void>()
    server.once('error', listening.reject)
    server.listen(this.#init.port ?? 0, this.#init.host ?? '127.0.0.1', () => { listening.resolve() })
    await listening.promise
    server.off('error', listening.reject)
    server.on('error', (err) => { this.#log.error({ err }, 'proxy server error') })
    this.#server = server
    this.#log.info({ address: this.address() }, 'proxy listening')
  }

  /** Stops listening and closes every client connection. */
  async stop (): Promise<void> {
    const server = this.#server
    if (server == null) return
    this.#server = undefined
    this.#stopping.abort(new ProxyStateError(`the ${this.#handshake.name} proxy is stopping`))
    for (const socket of this.#sockets) socket.destroy()
    await new Promise<void>((resolve) => { server.close(() => { resolve() }) })
  }

  /** The bound address; throws if the proxy is not listening. */
  address (): { host: string, port: number } {
    const addr = this.#server?.address() as AddressInfo | null | undefined
    if (addr == null) throw new ProxyStateError(`the ${this.#handshake.name} proxy is not listening`)
    return { host: addr.address, port: addr.port }
  }

  /** Number of client connections open now. */
  get connections (): number {
    return this.#sockets.size
  }

  #accept (socket: Socket): void {
    this.#sockets.add(socket)
    socket.setNoDelay(true)
    socket.on('error', (err) => { this.#log.debug({ err }, 'client socket error') })
    socket.once('close', () => { this.#sockets.delete(socket) })
    this.#serve(socket).catch((err) => { this.#log.error({ err }, 'proxy connection failed unexpectedly') })
  }

  async #serve (socket: Socket): Promise<void> {
    const timeoutMs = this.#init.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS
    const handshake = new AbortController()
    let target: RelayTarget | undefined
    let established = false
    const timer = setTimeout(() => { handshake.abort(new ProxyHandshakeTimeoutError(timeoutMs, target === undefined ? 'request' : 'relay')) }, timeoutMs)
    // a client that leaves mid-handshake cancels the dial
    const onClientGone = (): void => { handshake.abort(new HandshakeEndedError()) }
    socket.once('close', onClientGone)
    const signal = AbortSignal.any([handshake.signal, this.#stopping.signal])
    try {
      target = await this.#handshake.readRequest(socket, signal)
      const stream = await this.#init.dialer.dial(target, { signal })
      clearTimeout(timer)
      socket.off('close', onClientGone)
      this.#handshake.replySuccess(socket)
      established = true
      const onForward = this.#init.onForward
      const result = await pipeStreamSocket(stream, socket, {
        idleTimeoutMs: this.#init.idleTimeoutMs,
        signal: this.#stopping.signal,
        onForward: onForward == null ? undefined : (bytes: number, direction: PipeDirection) => { onForward(bytes, direction === 'socket-to-stream' ? 'up' : 'down') }
      })
      this.#log.debug({ target, up: result.bytesToStream, down: result.bytesToSocket }, 'proxied connection finished')
    } catch (err) {
      clearTimeout(timer)
      socket.off('close', onClientGone)
      this.#log.debug({ err, target }, 'proxied connection failed')
      if (established) {
        // the tunnel was up: a proxy reply now would corrupt the data, so reset the connection
        socket.destroy()
      } else if (!socket.destroyed) {
        this.#handshake.replyFailure(socket, err)
        // read and drop whatever else the client sends, and close for good
        // if it keeps its side open after our answer
        socket.resume()
        setTimeout(() => { socket.destroy() }, FAILURE_LINGER_MS).unref()
      }
    }
  }
}

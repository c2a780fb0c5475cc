/**
 * The seller's relay exit: the libp2p service answering
 * `/spareband/relay/1.0.0`. One stream per proxied TCP connection:
 *
 * 1. limits: the stream is refused (`ERR_TOO_MANY_STREAMS`) past the per-peer
 *    or total number of open relay streams;
 * 2. header: one `connect` message, bounded in size and read within the
 *    handshake timeout; a malformed one is answered with its error code and
 *    only that stream is closed;
 * 3. session: the {@link RelaySessionGate} names the payment session billed;
 * 4. resolution and policy: the host is resolved here and EVERY resolved
 *    address must pass the exit policy, else the request is refused
 *    (`ERR_EXIT_POLICY`) — a name mixing public and private addresses is
 *    refused outright, so DNS rebinding cannot slip a private address in;
 * 5. connect, with a timeout, to the resolved addresses in order;
 * 6. answer `connected`, then pipe bytes both ways through the session's
 *    credit, until both sides end, the link idles out or the session is
 *    revoked.
 *
 * Nothing is connected for a refused request.
 */
import { connect, type Socket } from 'node:net'
import { checkExit, type ExitPolicy } from '../../protocol/exit-policy.ts'
import { SparebandError } from '../../protocol/errors.ts'
import { ProtocolMessageError } from '../../protocol/messages/codec.ts'
import { relayCodecs, RELAY_MAX_MESSAGE_BYTES, RELAY_MESSAGE_VERSION, type RelayConnect } from '../../protocol/messages/relay.ts'
import { RELAY_PROTOCOL } from '../../protocol/protocol-ids.ts'
import { framedStream, type FramedStream } from '../framing.ts'
import { pipeStreamSocket, type PipeGate } from './pipe.ts'
import { DnsResolutionError, systemResolver, type TargetResolver } from './resolver.ts'
import type { RelaySession, RelaySessionGate } from './session-gate.ts'
import type { Connection, PeerId, Startable, Stream, StreamHandler, StreamHandlerOptions } from '@libp2p/interface'
import type { Logger } from 'pino'

/** Options of {@link relayExit}. */
export interface RelayExitInit {
  /** Decides which session a request is billed to; see {@link RelaySessionGate}. */
  gate: RelaySessionGate
  /** Where the exit may connect (checked on every resolved address). */
  policy: ExitPolicy
  /** Resolves target names. Default {@link systemResolver}. */
  resolver?: TargetResolver
  /**
   * Most open relay streams per buyer peer. Default 32. Each stream may hold
   * up to about two yamux receive windows of data towards a slow target, so
   * the exit's worst-case buffer memory is about `maxStreams × 2 × window`.
   */
  maxStreamsPerPeer?: number
  /** Most open relay streams in total. Default 256. */
  maxStreams?: number
  /** Time the buyer has to send its whole `connect` header, in ms. Default 10 s. */
  handshakeTimeoutMs?: number
  /** Time to resolve the target and connect to it, in ms. Default 10 s. */
  connectTimeoutMs?: number
  /** Close a relayed connection when no byte moved for this long, in ms. Default 5 min. */
  idleTimeoutMs?: number
  /** Parent logger. */
  logger: Logger
}

/** The libp2p components the exit uses. */
export interface RelayExitComponents {
  registrar: {
    handle: (protocol: string, handler: StreamHandler, options?: StreamHandlerOptions) => Promise<void>
    unhandle: (protocol: string) => Promise<void>
  }
}

/** Why the exit refused a request: the code and message sent to the buyer. */
export class RelayRefusal extends SparebandError {}

/** Counters of the exit's open relay streams. */
export interface RelayExitStats {
  /** Relay streams open now (in handshake or piping). */
  streams: number
  /** Buyer peers with at least one open relay stream. */
  peers: number
}

const DEFAULTS = {
  maxStreamsPerPeer: 32,
  maxStreams: 256,
  handshakeTimeoutMs: 10_000,
  connectTimeoutMs: 10_000,
  idleTimeoutMs: 5 * 60_000
}
/** How long a refused stream may stay half-open waiting for the buyer to close it. */
const REFUSAL_LINGER_MS = 5_000

/** The relay exit service; see the module comment. */
export class RelayExit implements Startable {
  readonly #components: RelayExitComponents
  readonly #init: Required<Omit<RelayExitInit, 'logger'>>
  readonly #log: Logger
  readonly #streamsPerPeer = new Map<string, number>()
  readonly #active = new Set<AbortController>()
  #streams = 0
  #running = false

  constructor (components: RelayExitComponents, init: RelayExitInit) {
    this.#components = components
    this.#init = {
      gate: init.gate,
      policy: init.policy,
      resolver: init.resolver ?? systemResolver(),
      maxStreamsPerPeer: init.maxStreamsPerPeer ?? DEFAULTS.maxStreamsPerPeer,
      maxStreams: init.maxStreams ?? DEFAULTS.maxStreams,
      handshakeTimeoutMs: init.handshakeTimeoutMs ?? DEFAULTS.handshakeTimeoutMs,
      connectTimeoutMs: init.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs,
      idleTimeoutMs: init.idleTimeoutMs ?? DEFAULTS.idleTimeoutMs
    }
    this.#log = init.logger.child({ component: 'relay-exit' })
  }

  readonly [Symbol.toStringTag] = 'spareband/relay-exit'

  async start (): Promise<void> {
    await this.#components.registrar.handle(RELAY_PROTOCOL, (stream, connection) => {
      this.#handle(stream, connection).catch((err) => { this.#log.error({ err }, 'relay stream failed unexpectedly') })
    }, {
      // leave room above our own limit so excess streams get a typed refusal
      maxInboundStreams: this.#init.maxStreamsPerPeer * 2
    })
    this.#running = true
  }

  async stop (): Promise<void> {
    this.#running = false
    await this.#components.registrar.unhandle(RELAY_PROTOCOL)
    for (const controller of this.#active) controller.abort(new RelayRefusal('ERR_SHUTTING_DOWN', 'the seller is shutting down; reconnect to another seller'))
  }

  /** Open relay streams now. */
  stats (): RelayExitStats {
    return { streams: this.#streams, peers: this.#streamsPerPeer.size }
  }

  async #handle (stream: Stream, connection: Connection): Promise<void> {
    const peer = connection.remotePeer
    const peerKey = peer.toString()
    const perPeer = this.#streamsPerPeer.get(peerKey) ?? 0
    const framed = framedStream(stream, { maxMessageBytes: RELAY_MAX_MESSAGE_BYTES, timeoutMs: this.#init.handshakeTimeoutMs })
    if (!this.#running || this.#streams >= this.#init.maxStreams || perPeer >= this.#init.maxStreamsPerPeer) {
      const refusal = this.#running
        ? new RelayRefusal('ERR_TOO_MANY_STREAMS', `too many open relay streams (${perPeer} of yours, ${this.#streams} in total); close some connections and retry`)
        : new RelayRefusal('ERR_SHUTTING_DOWN', 'the seller is shutting down; reconnect to another seller')
      await this.#refuse(stream, framed, refusal)
      return
    }
    this.#streams++
    this.#streamsPerPeer.set(peerKey, perPeer + 1)
    const lifetime = new AbortController()
    this.#active.add(lifetime)
    const log = this.#log.child({ peer: peerKey, stream: stream.id })
    try {
      await this.#serve(stream, framed, peer, lifetime.signal, log)
    } catch (err) {
      log.error({ err }, 'relay stream failed')
      stream.abort(err as Error)
    } finally {
      this.#active.delete(lifetime)
      this.#streams--
      const left = (this.#streamsPerPeer.get(peerKey) ?? 1) - 1
      if (left === 0) this.#streamsPerPeer.delete(peerKey)
      else this.#streamsPerPeer.set(peerKey, left)
    }
  }

  async #serve (stream: Stream, framed: FramedStream, peer: PeerId, signal: AbortSignal, log: Logger): Promise<void> {
    let request: RelayConnect
    try {
      request = relayCodecs.fromBuyer.decode(await framed.read({ signal }))
    } catch (err) {
      log.debug({ err }, 'bad relay header')
      if (err instanceof ProtocolMessageError) await this.#refuse(stream, framed, new RelayRefusal(err.code, err.message))
      else stream.abort(err as Error)
      return
    }
    const target = { host: request.host, port: request.port }

    const authorization = await this.#init.gate.authorize(peer, request.sessionId)
    if (!authorization.ok) {
      log.debug({ target, code: authorization.code }, 'relay session refused')
      await this.#refuse(stream, framed, new RelayRefusal(authorization.code, authorization.message))
      return
    }
    const session = authorization.session

    let socket: Socket
    try {
      socket = await this.#open(target.host, target.port, signal)
    } catch (err) {
      if (!(err instanceof RelayRefusal)) throw err
      log.debug({ target, code: err.code, reason: err.message }, 'relay request refused')
      await this.#refuse(stream, framed, err)
      return
    }
    socket.on('error', (err) => { log.debug({ err, target }, 'target socket error') })

    const revoked = new AbortController()
    const stopRevocation = session.onRevoked((reason) => { revoked.abort(reason) })
    try {
      await framed.write(relayCodecs.fromSeller.encode({ v: RELAY_MESSAGE_VERSION, type: 'connected' }), { signal })
      log.debug({ target, remote: socket.remoteAddress }, 'relay connected')
      const result = await pipeStreamSocket(framed.unwrap(), socket, {
        gate: sessionPipeGate(session),
        idleTimeoutMs: this.#init.idleTimeoutMs,
        signal: AbortSignal.any([signal, revoked.signal])
      })
      log.debug({ target, up: result.bytesToSocket, down: result.bytesToStream }, 'relay finished')
    } catch (err) {
      log.debug({ err, target }, 'relay ended with an error')
      socket.destroy()
      if (stream.status === 'open') stream.abort(err as Error)
    } finally {
      stopRevocation()
    }
  }

  /**
   * Resolves `host`, checks every address against the exit policy and
   * connects to the first that accepts. Throws a {@link RelayRefusal}.
   */
  async #open (host: string, port: number, signal: AbortSignal): Promise<Socket> {
    const timeoutMs = this.#init.connectTimeoutMs
    const deadline = AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)])
    let addresses: string[]
    try {
      addresses = await this.#init.resolver.resolve(host, deadline)
    } catch (err) {
      signal.throwIfAborted()
      if (err instanceof DnsResolutionError) throw new RelayRefusal('ERR_DNS', err.message)
      throw new RelayRefusal('ERR_DNS', `the exit could not resolve "${host}" within ${timeoutMs} ms; retry later`)
    }
    for (const address of addresses) {
      const decision = checkExit(address, port, this.#init.policy)
      if (!decision.allowed) {
        const via = address === host ? '' : ` (${host} resolves to ${address})`
        throw new RelayRefusal('ERR_EXIT_POLICY', `${decision.code}: ${decision.reason}${via}`)
      }
    }
    let lastError: unknown
    for (const address of addresses) {
      try {
        return await connectTcp(address, port, deadline)
      } catch (err) {
        signal.throwIfAborted()
        lastError = err
        if (deadline.aborted) break
      }
    }
    throw connectRefusal(host, port, lastError, deadline.aborted, timeoutMs)
  }

  /** Answers `refused`, closes our writable end and aborts if the buyer lingers. */
  async #refuse (stream: Stream, framed: FramedStream, refusal: RelayRefusal): Promise<void> {
    const linger = setTimeout(() => { stream.abort(refusal) }, REFUSAL_LINGER_MS)
    linger.unref()
    stream.addEventListener('close', () => { clearTimeout(linger) }, { once: true })
    try {
      await framed.write(relayCodecs.fromSeller.encode({ v: RELAY_MESSAGE_VERSION, type: 'refused', code: refusal.code, message: refusal.message.slice(0, 256) }))
      await stream.close()
    } catch (err) {
      stream.abort(err as Error)
    }
  }
}

/** Connects to `address:port`, half-open capable; rejects on error or abort. */
async function connectTcp (address: string, port: number, signal: AbortSignal): Promise<Socket> {
  signal.throwIfAborted()
  const socket = connect({ host: address, port, allowHalfOpen: true, noDelay: true })
  const connected = Promise.withResolvers<Socket>()
  const onAbort = (): void => { socket.destroy(); connected.reject(signal.reason) }
  signal.addEventListener('abort', onAbort, { once: true })
  socket.once('connect', () => { connected.resolve(socket) })
  socket.once('error', connected.reject)
  try {
    return await connected.promise
  } finally {
    signal.removeEventListener('abort', onAbort)
    socket.off('error', connected.reject)
  }
}

function connectRefusal (host: string, port: number, err: unknown, timedOut: boolean, timeoutMs: number): RelayRefusal {
  const target = `${host}:${port}`
  if (timedOut) return new RelayRefusal('ERR_CONNECT_TIMEOUT', `${target} did not accept a connection within ${timeoutMs} ms`)
  const errno = (err as NodeJS.ErrnoException)?.code
  if (errno === 'ECONNREFUSED') return new RelayRefusal('ERR_CONNECT_REFUSED', `${target} refused the connection`)
  if (errno === 'ETIMEDOUT') return new RelayRefusal('ERR_CONNECT_TIMEOUT', `${target} did not answer`)
  return new RelayRefusal('ERR_CONNECT_UNREACHABLE', `${target} is unreachable from this exit (${errno ?? (err as Error)?.message})`)
}

/** The pipe's credit gate over a relay session: stream → socket is `up`, socket → stream is `down`. */
function sessionPipeGate (session: RelaySession): PipeGate {
  return {
    take: (bytes, direction) => session.take(bytes, direction === 'stream-to-socket' ? 'up' : 'down'),
    waitForCredit: async (signal) => { await session.waitForCredit(signal) }
  }
}

/** The relay exit as a libp2p service: `services: { relayExit: relayExit(init) }`. */
export function relayExit (init: RelayExitInit): (components: RelayExitComponents) => RelayExit {
  return (components) => new RelayExit(components, init)
}

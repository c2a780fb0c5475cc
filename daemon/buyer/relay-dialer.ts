/**
 * Opens relay streams to a seller: one `/spareband/relay/1.0.0` stream per
 * proxied TCP connection, a `connect` header naming the target and the
 * payment session, then the seller's answer. On `connected` the stream is
 * returned ready for raw bytes; on `refused` a {@link RelayRefusedError}
 * carries the seller's code.
 */
import { framedStream, FrameTimeoutError } from '../framing.ts'
import { SparebandError } from '../../protocol/errors.ts'
import { relayCodecs, RELAY_MAX_MESSAGE_BYTES } from '../../protocol/messages/relay.ts'
import { RELAY_PROTOCOL } from '../../protocol/protocol-ids.ts'
import { ProxyHandshakeTimeoutError } from './local-proxy.ts'
import type { AbortOptions, PeerId, Stream } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

/** Where a proxied connection should go: a DNS name or IP literal, and a port. */
export interface RelayTarget {
  /** DNS name (resolved by the seller) or IPv4/IPv6 literal (IPv6 without brackets). */
  host: string
  /** TCP port, 1–65535. */
  port: number
}

/** Opens one relay stream per proxied connection. */
export interface RelayDialer {
  /**
   * Opens a relay stream to `target`. Resolves with the stream once the
   * seller has connected; throws {@link RelayRefusedError} when the seller
   * refuses, {@link SellerUnreachableError} when it cannot be reached.
   */
  dial: (target: RelayTarget, options?: AbortOptions) => Promise<Stream>
}

/** The seller and payment session that relay streams are opened for. */
export interface RelayRoute {
  /** The seller's peer id (or addresses). */
  seller: PeerId | Multiaddr | Multiaddr[]
  /** The payment session the seller bills the streams to (32 hex digits). */
  sessionId: string
}

/** The part of a libp2p node the dialer uses. */
export interface RelayDialerNode {
  dialProtocol: (peer: PeerId | Multiaddr | Multiaddr[], protocols: string | string[], options?: AbortOptions) => Promise<Stream>
}

/** Options of {@link libp2pRelayDialer}. */
export interface RelayDialerInit {
  /** The buyer's libp2p node. */
  node: RelayDialerNode
  /** Seller and session for the next stream; read on every dial, so the buyer can switch sellers. */
  route: () => RelayRoute
  /** Time the seller has to answer a `connect`, in ms. Default 15 s (it resolves and connects first). */
  responseTimeoutMs?: number
}

/** The seller refused a relay request; `refusal` is the seller's stable code (e.g. `ERR_EXIT_POLICY`). */
export class RelayRefusedError extends SparebandError {
  /** The seller's refusal code, e.g. `ERR_EXIT_POLICY`, `ERR_DNS`, `ERR_NO_CREDIT`. */
  readonly refusal: string

  constructor (refusal: string, message: string) {
    super('ERR_RELAY_REFUSED', `the seller refused the connection: ${refusal}: ${message}`)
    this.refusal = refusal
  }
}

/** No relay stream could be opened to the seller. */
export class SellerUnreachableError extends SparebandError {
  constructor (cause: unknown) {
    super('ERR_SELLER_UNREACHABLE', `could not open a relay stream to the seller (${(cause as Error)?.message ?? String(cause)}); check the seller is online or pick another`, { cause })
  }
}

/** Opens relay streams over libp2p to the route's seller. */
export function libp2pRelayDialer (init: RelayDialerInit): RelayDialer {
  const responseTimeoutMs = init.responseTimeoutMs ?? 15_000
  return {
    async dial (target, options) {
      const route = init.route()
      let stream: Stream
      try {
        stream = await init.node.dialProtocol(route.seller, RELAY_PROTOCOL, options)
      } catch (err) {
        options?.signal?.throwIfAborted()
        throw new SellerUnreachableError(err)
      }
      try {
        const framed = framedStream(stream, { maxMessageBytes: RELAY_MAX_MESSAGE_BYTES, timeoutMs: responseTimeoutMs })
        await framed.write(relayCodecs.fromBuyer.encode({ v: 1, type: 'connect', sessionId: route.sessionId, host: target.host, port: target.port }), options)
        const response = relayCodecs.fromSeller.decode(await framed.read(options))
        if (response.type === 'refused') {
          void stream.close().catch(() => {})
          throw new RelayRefusedError(response.code, response.message)
        }
        return framed.unwrap()
      } catch (err) {
        if (!(err instanceof RelayRefusedError)) stream.abort(err as Error)
        throw err
      }
    }
  }
}

/** How a proxied connection failed, as far as a proxy protocol can tell its client. */
export type FailureKind = 'policy' | 'dns' | 'refused' | 'timeout' | 'unreachable' | 'seller' | 'session' | 'limit' | 'other'

const KIND_OF_REFUSAL: Record<string, FailureKind> = {
  ERR_EXIT_POLICY: 'policy',
  ERR_DNS: 'dns',
  ERR_CONNECT_REFUSED: 'refused',
  ERR_CONNECT_TIMEOUT: 'timeout',
  ERR_CONNECT_UNREACHABLE: 'unreachable',
  ERR_NO_CREDIT: 'session',
  ERR_UNKNOWN_SESSION: 'session',
  ERR_TOO_MANY_STREAMS: 'limit'
}

/** Classifies a dial or handshake failure for the SOCKS5 and HTTP reply codes. */
export function failureKind (err: unknown): FailureKind {
  if (err instanceof RelayRefusedError) return KIND_OF_REFUSAL[err.refusal] ?? (err.refusal.startsWith('ERR_EXIT_') ? 'policy' : 'other')
  if (err instanceof SellerUnreachableError) return 'seller'
  if (err instanceof FrameTimeoutError || err instanceof ProxyHandshakeTimeoutError) return 'timeout'
  return 'other'
}

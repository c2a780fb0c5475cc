/**
 * The buyer's local SOCKS5 proxy (RFC 1928): no authentication, CONNECT only.
 * Domain names are passed to the seller unresolved (the seller resolves them
 * and applies its exit policy); IPv4 and IPv6 literals are passed as text.
 */
import { SparebandError } from '../../protocol/errors.ts'
import { readHandshake, type Parsed } from './handshake-reader.ts'
import { LocalProxy, type LocalProxyInit, type ProxyHandshake } from './local-proxy.ts'
import { failureKind, type FailureKind } from './relay-dialer.ts'
import type { RelayTarget } from './relay-dialer.ts'
import type { Socket } from 'node:net'

/** SOCKS5 reply codes (RFC 1928 §6). */
export const SOCKS5_REPLY = {
  succeeded: 0x00,
  generalFailure: 0x01,
  notAllowedByRuleset: 0x02,
  networkUnreachable: 0x03,
  hostUnreachable: 0x04,
  connectionRefused: 0x05,
  ttlExpired: 0x06,
  commandNotSupported: 0x07,
  addressTypeNotSupported: 0x08
} as const

const VERSION = 0x05
const METHOD_NO_AUTH = 0x00
const METHOD_NONE_ACCEPTABLE = 0xff
const CMD_CONNECT = 0x01
const ATYP_IPV4 = 0x01
const ATYP_DOMAIN = 0x03
const ATYP_IPV6 = 0x04
/** Longest greeting: VER, NMETHODS, 255 methods. */
const MAX_GREETING_BYTES = 2 + 255
/** Longest request: VER, CMD, RSV, ATYP, length byte, 255-byte name, port. */
const MAX_REQUEST_BYTES = 4 + 1 + 255 + 2

/** A SOCKS5 client sent something the proxy cannot serve; `reply` is the code to answer with, if any. */
export class Socks5RequestError extends SparebandError {
  /** SOCKS5 reply code to send before closing, or `undefined` to close without one. */
  readonly reply: number | undefined

  constructor (code: string, message: string, reply: number | undefined) {
    super(code, message)
    this.reply = reply
  }
}

/** Parses a SOCKS5 greeting (`VER NMETHODS METHODS…`) into its methods. */
export function parseSocks5Greeting (buf: Buffer): Parsed<number[]> | undefined {
  if (buf.byteLength < 2) return undefined
  if (buf[0] !== VERSION) {
    throw new Socks5RequestError('ERR_SOCKS5_VERSION', `the client spoke SOCKS version ${buf[0]}; this proxy speaks SOCKS5 only`, undefined)
  }
  const count = buf[1]
  if (count === 0) throw new Socks5RequestError('ERR_SOCKS5_NO_METHODS', 'the SOCKS5 client offered no authentication method', undefined)
  if (buf.byteLength < 2 + count) return undefined
  return { value: [...buf.subarray(2, 2 + count)], consumed: 2 + count }
}

/** Parses a SOCKS5 request (`VER CMD RSV ATYP DST.ADDR DST.PORT`) into its CONNECT target. */
export function parseSocks5Request (buf: Buffer): Parsed<RelayTarget> | undefined {
  if (buf.byteLength < 5) return undefined
  if (buf[0] !== VERSION) {
    throw new Socks5RequestError('ERR_SOCKS5_VERSION', `the client spoke SOCKS version ${buf[0]} in its request; this proxy speaks SOCKS5 only`, SOCKS5_REPLY.generalFailure)
  }
  if (buf[1] !== CMD_CONNECT) {
    throw new Socks5RequestError('ERR_SOCKS5_COMMAND', `SOCKS5 command ${buf[1]} is not supported; only CONNECT is`, SOCKS5_REPLY.commandNotSupported)
  }
  let host: string
  let offset: number
  switch (buf[3]) {
    case ATYP_IPV4:
      if (buf.byteLength < 4 + 4 + 2) return undefined
      host = [...buf.subarray(4, 8)].join('.')
      offset = 8
      break
    case ATYP_IPV6: {
      if (buf.byteLength < 4 + 16 + 2) return undefined
      const groups: string[] = []
      for (let i = 0; i < 8; i++) groups.push(buf.readUInt16BE(4 + 2 * i).toString(16))
      host = groups.join(':')
      offset = 20
      break
    }
    case ATYP_DOMAIN: {
      const length = buf[4]
      if (length === 0) throw new Socks5RequestError('ERR_SOCKS5_ADDRESS', 'the SOCKS5 client sent an empty domain name', SOCKS5_REPLY.hostUnreachable)
      if (buf.byteLength < 5 + length + 2) return undefined
      host = buf.subarray(5, 5 + length).toString('latin1')
      if (!/^[A-Za-z0-9_.-]+$/.test(host)) {
        throw new Socks5RequestError('ERR_SOCKS5_ADDRESS', 'the SOCKS5 client sent a domain name with characters a host name cannot have', SOCKS5_REPLY.hostUnreachable)
      }
      offset = 5 + length
      break
    }
    default:
      throw new Socks5RequestError('ERR_SOCKS5_ADDRESS_TYPE', `SOCKS5 address type ${buf[3]} is not supported`, SOCKS5_REPLY.addressTypeNotSupported)
  }
  const port = buf.readUInt16BE(offset)
  if (port === 0) throw new Socks5RequestError('ERR_SOCKS5_PORT', 'the SOCKS5 client asked for port 0', SOCKS5_REPLY.connectionRefused)
  return { value: { host, port }, consumed: offset + 2 }
}

const REPLY_OF_KIND: Record<FailureKind, number> = {
  policy: SOCKS5_REPLY.notAllowedByRuleset,
  dns: SOCKS5_REPLY.hostUnreachable,
  refused: SOCKS5_REPLY.connectionRefused,
  timeout: SOCKS5_REPLY.ttlExpired,
  unreachable: SOCKS5_REPLY.hostUnreachable,
  seller: SOCKS5_REPLY.networkUnreachable,
  session: SOCKS5_REPLY.notAllowedByRuleset,
  limit: SOCKS5_REPLY.generalFailure,
  other: SOCKS5_REPLY.generalFailure
}

/** The SOCKS5 reply code that tells a client why its connection failed. */
export function socks5ReplyFor (err: unknown): number | undefined {
  if (err instanceof Socks5RequestError) return err.reply
  return REPLY_OF_KIND[failureKind(err)]
}

/** A SOCKS5 reply with an all-zero IPv4 bound address. */
function reply (code: number): Buffer {
  return Buffer.from([VERSION, code, 0x00, ATYP_IPV4, 0, 0, 0, 0, 0, 0])
}

/** Clients past the method negotiation: only they get a reply to a failed request. */
const negotiated = new WeakSet<Socket>()

/** The SOCKS5 side of a client connection. */
export const socks5Handshake: ProxyHandshake = {
  name: 'socks5',
  async readRequest (socket: Socket, signal: AbortSignal): Promise<RelayTarget> {
    const methods = await readHandshake(socket, parseSocks5Greeting, MAX_GREETING_BYTES, signal)
    if (!methods.includes(METHOD_NO_AUTH)) {
      socket.end(Buffer.from([VERSION, METHOD_NONE_ACCEPTABLE]))
      throw new Socks5RequestError('ERR_SOCKS5_AUTH', 'the SOCKS5 client does not accept "no authentication"; configure it without a user name and password', undefined)
    }
    socket.write(Buffer.from([VERSION, METHOD_NO_AUTH]))
    negotiated.add(socket)
    return await readHandshake(socket, parseSocks5Request, MAX_REQUEST_BYTES, signal)
  },
  replySuccess (socket: Socket): void {
    socket.write(reply(SOCKS5_REPLY.succeeded))
  },
  replyFailure (socket: Socket, err: unknown): void {
    const code = socks5ReplyFor(err)
    if (code === undefined || socket.writableEnded || !negotiated.has(socket)) socket.destroy()
    else socket.end(reply(code))
  }
}

/** Creates the buyer's SOCKS5 proxy; call `start()` to listen. */
export function socks5Proxy (init: LocalProxyInit): LocalProxy {
  return new LocalProxy(socks5Handshake, init)
}

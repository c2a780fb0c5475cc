import { Type, type StaticDecode, type TLiteral, type TObject, type TProperties } from '@sinclair/typebox'
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler'
import type { ValueError } from '@sinclair/typebox/errors'
import { TransformDecodeCheckError, TransformDecodeError, TransformEncodeCheckError, TransformEncodeError } from '@sinclair/typebox/value'
import { SparebandError } from '../errors.ts'

/** Stable codes of {@link ProtocolMessageError}. */
export type ProtocolMessageErrorCode =
  | 'ERR_MESSAGE_TOO_LARGE'
  | 'ERR_MESSAGE_MALFORMED'
  | 'ERR_MESSAGE_SCHEMA'
  | 'ERR_MESSAGE_UNKNOWN_TYPE'
  | 'ERR_UNSUPPORTED_VERSION'

/**
 * Raised by every message codec for any input it refuses, and for nothing else:
 * the daemon closes the stream that carried the message and keeps running.
 */
export class ProtocolMessageError extends SparebandError {
  declare readonly code: ProtocolMessageErrorCode
  /** The libp2p protocol id whose message was refused. */
  readonly protocol: string
  /** The message versions this node speaks on that protocol. */
  readonly supportedVersions: readonly number[]

  constructor (code: ProtocolMessageErrorCode, protocol: string, supportedVersions: readonly number[], message: string, options?: { cause?: unknown }) {
    super(code, `${protocol}: ${message}`, options)
    this.protocol = protocol
    this.supportedVersions = supportedVersions
  }
}

/** The schema of one message: `{ v, type, ...properties }`, no other keys allowed. */
export function messageSchema<V extends number, T extends string, P extends TProperties> (v: V, type: T, properties: P): TObject<{ v: TLiteral<V>, type: TLiteral<T> } & P> {
  return Type.Object({ v: Type.Literal(v), type: Type.Literal(type), ...properties }, { additionalProperties: false })
}

/** The schemas of the messages one side of a protocol sends, keyed by `type`. */
export type MessageSchemas = Record<string, TObject>

/** The decoded (bigint-carrying) union of the messages described by `S`. */
export type MessageOf<S extends MessageSchemas> = { [K in keyof S]: StaticDecode<S[K]> }[keyof S]

/** Turns the messages of one protocol direction into bytes and back, refusing anything invalid. */
export interface MessageCodec<Message> {
  /** The libp2p protocol id these messages travel on. */
  readonly protocol: string
  /** The message version (`v`) this codec speaks. */
  readonly version: number
  /** Hard limit of one encoded message, checked before parsing; the framing layer should use it too. */
  readonly maxMessageBytes: number
  /** UTF-8 JSON of a valid message; throws {@link ProtocolMessageError} for an invalid one. */
  encode (message: Message): Uint8Array
  /** The validated message in `bytes`; throws {@link ProtocolMessageError}, and only that, for anything else. */
  decode (bytes: Uint8Array): Message
}

/** Options of {@link messageCodec}. */
export interface MessageCodecInit<S extends MessageSchemas> {
  protocol: string
  version: number
  maxMessageBytes: number
  schemas: S
}

const utf8Decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })
const utf8Encoder = new TextEncoder()

/** A codec for the messages in `init.schemas`, each compiled once with TypeBox's `TypeCompiler`. */
export function messageCodec<S extends MessageSchemas> (init: MessageCodecInit<S>): MessageCodec<MessageOf<S>> {
  const { protocol, version, maxMessageBytes } = init
  const supported = [version]
  const checks = new Map<string, TypeCheck<S[keyof S]>>()
  for (const [type, schema] of Object.entries(init.schemas)) {
    if (schema.properties.type?.const !== type || schema.properties.v?.const !== version) {
      throw new TypeError(`schema "${type}" of ${protocol} must have type "${type}" and v ${version}`)
    }
    checks.set(type, TypeCompiler.Compile(schema as S[keyof S]))
  }
  const fail = (code: ProtocolMessageErrorCode, message: string, cause?: unknown): ProtocolMessageError =>
    new ProtocolMessageError(code, protocol, supported, message, { cause })

  return {
    protocol,
    version,
    maxMessageBytes,

    encode (message) {
      const type = (message as { type?: unknown } | undefined)?.type
      const check = typeof type === 'string' ? checks.get(type) : undefined
      if (check === undefined) throw fail('ERR_MESSAGE_UNKNOWN_TYPE', `cannot send a message of unknown type ${describeType(type)}`)
      let wire: unknown
      try {
        wire = check.Encode(message)
      } catch (err) {
        throw fail('ERR_MESSAGE_SCHEMA', `refusing to send an invalid "${String(type)}" message: ${describeTransformError(err)}`, err)
      }
      const bytes = utf8Encoder.encode(JSON.stringify(wire))
      if (bytes.byteLength > maxMessageBytes) {
        throw fail('ERR_MESSAGE_TOO_LARGE', `refusing to send a ${bytes.byteLength}-byte "${String(type)}" message; the limit is ${maxMessageBytes} bytes`)
      }
      return bytes
    },

    decode (bytes) {
      if (!(bytes instanceof Uint8Array)) throw fail('ERR_MESSAGE_MALFORMED', 'a message must be bytes')
      if (bytes.byteLength > maxMessageBytes) {
        throw fail('ERR_MESSAGE_TOO_LARGE', `peer sent a ${bytes.byteLength}-byte message; the limit is ${maxMessageBytes} bytes, so the stream is closed`)
      }
      let value: unknown
      try {
        value = JSON.parse(utf8Decoder.decode(bytes))
      } catch (err) {
        throw fail('ERR_MESSAGE_MALFORMED', 'peer sent a message that is not UTF-8 JSON; the stream is closed', err)
      }
      const { v, type } = (typeof value === 'object' && value !== null ? value : {}) as { v?: unknown, type?: unknown }
      if (!Number.isSafeInteger(v)) throw fail('ERR_MESSAGE_SCHEMA', 'peer sent a message that is not a JSON object with an integer version "v"; the stream is closed')
      if (v !== version) {
        throw fail('ERR_UNSUPPORTED_VERSION', `peer speaks message version ${String(v)}, this node speaks version ${supported.join(', ')}; one of the two nodes needs a spareband upgrade`)
      }
      const check = typeof type === 'string' ? checks.get(type) : undefined
      if (check === undefined) {
        throw fail('ERR_MESSAGE_UNKNOWN_TYPE', `peer sent a message of unknown type ${describeType(type)}; expected one of ${[...checks.keys()].join(', ')}`)
      }
      if (!check.Check(value)) {
        throw fail('ERR_MESSAGE_SCHEMA', `peer sent an invalid "${String(type)}" message: ${describeValueError(check.Errors(value).First())}; the stream is closed`)
      }
      try {
        return check.Decode(value)
      } catch (err) {
        throw fail('ERR_MESSAGE_SCHEMA', `peer sent an invalid "${String(type)}" message: ${describeTransformError(err)}; the stream is closed`, err)
      }
    }
  }
}

/** At most this many characters of peer-chosen text (paths, types) go into an error message. */
const MAX_ECHO = 64

function clip (text: string): string {
  return text.length > MAX_ECHO ? `${text.slice(0, MAX_ECHO)}…` : text
}

function describeType (type: unknown): string {
  return typeof type === 'string' ? JSON.stringify(clip(type)) : `(${typeof type})`
}

function describeValueError (error: ValueError | undefined): string {
  if (error === undefined) return 'it does not match the schema'
  return `${clip(error.path === '' ? '/' : error.path)} ${error.message.toLowerCase()}`
}

/** Describes the errors TypeBox's `Encode`/`Decode` throw: a failed check, or a failed transform at a path. */
function describeTransformError (err: unknown): string {
  if (err instanceof TransformDecodeCheckError || err instanceof TransformEncodeCheckError) return describeValueError(err.error)
  if (err instanceof TransformDecodeError || err instanceof TransformEncodeError) return `${clip(err.path === '' ? '/' : err.path)} ${clip(err.message)}`
  return err instanceof Error ? clip(err.message) : 'it does not match the schema'
}

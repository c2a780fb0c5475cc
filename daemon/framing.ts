/**
 * Length-prefixed message I/O over one libp2p stream: every message is an
 * unsigned-varint length followed by that many bytes. Each read is bounded in
 * size and in time, so a slow or hostile peer can only fail its own stream.
 */
import { InvalidDataLengthError, InvalidDataLengthLengthError, InvalidMessageLengthError, lpStream, type LengthPrefixedStream } from '@libp2p/utils'
import { SparebandError } from '../protocol/errors.ts'
import type { AbortOptions, Stream } from '@libp2p/interface'

/** Default time a single read or write may take before the stream is given up. */
export const DEFAULT_FRAME_TIMEOUT_MS = 10_000

/** Raised when a peer announces or sends a message larger than the protocol allows. */
export class FrameTooLargeError extends SparebandError {
  constructor (maxMessageBytes: number, options?: { cause?: unknown }) {
    super('ERR_FRAME_TOO_LARGE', `the peer sent a message larger than ${maxMessageBytes} bytes; the stream was closed`, options)
  }
}

/** Raised when a read or write did not complete within its time limit. */
export class FrameTimeoutError extends SparebandError {
  constructor (timeoutMs: number, options?: { cause?: unknown }) {
    super('ERR_FRAME_TIMEOUT', `the peer did not complete a message within ${timeoutMs} ms; the stream was closed`, options)
  }
}

/** Raised when the stream ended or was reset before a whole message arrived. */
export class StreamEndedError extends SparebandError {
  constructor (options?: { cause?: unknown }) {
    super('ERR_STREAM_ENDED', 'the peer closed the stream before sending a whole message', options)
  }
}

/** Raised when a message is not a valid length-prefixed frame (e.g. a negative or overlong varint). */
export class InvalidFrameError extends SparebandError {
  constructor (options?: { cause?: unknown }) {
    super('ERR_INVALID_FRAME', 'the peer sent a malformed length prefix; the stream was closed', options)
  }
}

/** Limits of a {@link FramedStream}. */
export interface FramedStreamInit {
  /** Largest message (payload bytes, without the length prefix) accepted or sent. */
  maxMessageBytes: number
  /** Time limit of each read and each write in ms. Default {@link DEFAULT_FRAME_TIMEOUT_MS}. */
  timeoutMs?: number
  /**
   * Most bytes buffered from the peer ahead of reads; beyond it the stream is
   * aborted. Default: room for two whole messages, so a peer may pipeline one.
   */
  maxBufferBytes?: number
}

/** Reads and writes whole length-prefixed messages on one stream. */
export interface FramedStream {
  /** The next whole message; throws a {@link SparebandError} subclass on size, time, framing or end of stream. */
  read(options?: AbortOptions): Promise<Uint8Array>
  /** Sends one message, waiting for the stream to drain if its write buffer is full. */
  write(message: Uint8Array, options?: AbortOptions): Promise<void>
  /** The underlying stream, with any unread bytes put back. The framed stream can no longer be used. */
  unwrap(): Stream
}

/** Wraps a libp2p stream for length-prefixed messages with size and time limits. */
export function framedStream (stream: Stream, init: FramedStreamInit): FramedStream {
  const { maxMessageBytes } = init
  const timeoutMs = init.timeoutMs ?? DEFAULT_FRAME_TIMEOUT_MS
  const prefixBytes = varintLength(maxMessageBytes)
  const lp: LengthPrefixedStream<Stream> = lpStream(stream, {
    maxDataLength: maxMessageBytes,
    maxLengthLength: prefixBytes,
    maxBufferSize: init.maxBufferBytes ?? 2 * (maxMessageBytes + prefixBytes)
  })

  return {
    async read (options) {
      const timeout = AbortSignal.timeout(timeoutMs)
      try {
        return (await lp.read({ signal: anySignal(timeout, options) })).subarray()
      } catch (err) {
        throw toFrameError(err, timeout, maxMessageBytes, timeoutMs)
      }
    },
    async write (message, options) {
      if (message.byteLength > maxMessageBytes) {
        throw new FrameTooLargeError(maxMessageBytes)
      }
      const timeout = AbortSignal.timeout(timeoutMs)
      try {
        await lp.write(message, { signal: anySignal(timeout, options) })
      } catch (err) {
        throw toFrameError(err, timeout, maxMessageBytes, timeoutMs)
      }
    },
    unwrap () {
      return lp.unwrap()
    }
  }
}

function anySignal (timeout: AbortSignal, options?: AbortOptions): AbortSignal {
  return options?.signal == null ? timeout : AbortSignal.any([timeout, options.signal])
}

/** Bytes of the unsigned varint encoding of `n`. */
function varintLength (n: number): number {
  let bytes = 1
  while (n >= 0x80) {
    n = Math.floor(n / 0x80)
    bytes++
  }
  return bytes
}

function toFrameError (err: unknown, timeout: AbortSignal, maxMessageBytes: number, timeoutMs: number): Error {
  if (err instanceof SparebandError) return err
  if (err instanceof InvalidDataLengthError || err instanceof InvalidDataLengthLengthError || (err as Error)?.name === 'StreamBufferError') {
    return new FrameTooLargeError(maxMessageBytes, { cause: err })
  }
  if (err instanceof InvalidMessageLengthError) {
    return new InvalidFrameError({ cause: err })
  }
  if (timeout.aborted) {
    return new FrameTimeoutError(timeoutMs, { cause: err })
  }
  if ((err as Error)?.name === 'AbortError') {
    // the caller's own abort is passed through unchanged
    return err as Error
  }
  return new StreamEndedError({ cause: err })
}

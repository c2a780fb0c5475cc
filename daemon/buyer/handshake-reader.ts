/**
 * Reads a client's proxy handshake from a TCP socket, bounded in size and
 * time. Bytes the client sent past the handshake are put back on the socket
 * (`socket.unshift`), which is left paused for whoever reads next.
 */
import { SparebandError } from '../../protocol/errors.ts'
import type { Socket } from 'node:net'

/** What a handshake parser found in the bytes read so far. */
export interface Parsed<T> {
  /** The parsed message. */
  value: T
  /** How many bytes of the buffer it used. */
  consumed: number
}

/**
 * Parses a handshake message from the start of `buf`; returns `undefined`
 * while more bytes are needed, throws when the bytes can never form one.
 */
export type HandshakeParser<T> = (buf: Buffer) => Parsed<T> | undefined

/** The client sent a larger handshake than allowed. */
export class HandshakeTooLargeError extends SparebandError {
  constructor (maxBytes: number) {
    super('ERR_PROXY_HANDSHAKE_TOO_LARGE', `the proxy client sent a request larger than ${maxBytes} bytes; send a shorter request`)
  }
}

/** The client closed the connection in the middle of its handshake. */
export class HandshakeEndedError extends SparebandError {
  constructor () {
    super('ERR_PROXY_HANDSHAKE_ENDED', 'the proxy client closed the connection before completing its request')
  }
}

/**
 * Reads one message from `socket` with `parse`. Rejects with
 * {@link HandshakeTooLargeError} once `maxBytes` are buffered without a whole
 * message, with {@link HandshakeEndedError} if the socket ends or fails, and
 * with the signal's reason if `signal` aborts.
 */
export async function readHandshake<T> (socket: Socket, parse: HandshakeParser<T>, maxBytes: number, signal: AbortSignal): Promise<T> {
  const result = Promise.withResolvers<T>()
  let buffered: Buffer = Buffer.alloc(0)

  const finish = (): void => {
    socket.pause()
    socket.off('data', onData)
    socket.off('end', onEnd)
    socket.off('error', onEnd)
    socket.off('close', onEnd)
    signal.removeEventListener('abort', onAbort)
  }
  const onData = (chunk: Buffer): void => {
    buffered = buffered.byteLength === 0 ? chunk : Buffer.concat([buffered, chunk])
    let parsed: Parsed<T> | undefined
    try {
      parsed = parse(buffered)
    } catch (err) {
      finish()
      result.reject(err)
      return
    }
    if (parsed == null) {
      if (buffered.byteLength >= maxBytes) {
        finish()
        result.reject(new HandshakeTooLargeError(maxBytes))
      }
      return
    }
    finish()
    if (parsed.consumed < buffered.byteLength) socket.unshift(buffered.subarray(parsed.consumed))
    result.resolve(parsed.value)
  }
  const onEnd = (): void => {
    finish()
    result.reject(new HandshakeEndedError())
  }
  const onAbort = (): void => {
    finish()
    result.reject(signal.reason)
  }

  if (signal.aborted) throw signal.reason
  signal.addEventListener('abort', onAbort, { once: true })
  socket.on('data', onData)
  socket.on('end', onEnd)
  socket.on('error', onEnd)
  socket.on('close', onEnd)
  socket.resume()
  return await result.promise
}

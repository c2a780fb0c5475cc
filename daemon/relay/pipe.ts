/**
 * Byte pipe between a libp2p stream and a TCP socket, with backpressure both
 * ways, half-close propagation, credit gating and an idle timeout.
 *
 * - socket → stream: `stream.send()` returning false pauses the socket until
 *   the stream's `'drain'` event.
 * - stream → socket: `socket.write()` returning false pauses the stream (which
 *   stops yamux window updates, so the remote stops sending) until the
 *   socket's `'drain'` event. Unforwarded bytes go back to the front of the
 *   stream's read buffer with `unshift()`.
 * - The socket's `'end'` closes the stream's writable end; the stream's `'end'`
 *   (remote closed its writable end, read buffer empty) ends the socket.
 * - An error or reset on either side destroys the other.
 * - A {@link PipeGate} grants credit before bytes are forwarded; with none
 *   left, both directions stop reading until {@link PipeGate.waitForCredit}.
 */
import { SparebandError } from '../../protocol/errors.ts'
import { deferred } from './deferred.ts'
import type { Stream, StreamCloseEvent, StreamMessageEvent } from '@libp2p/interface'
import type { Socket } from 'node:net'

/** Which way bytes flow through the pipe. */
export type PipeDirection = 'stream-to-socket' | 'socket-to-stream'

/**
 * Credit that bytes must obtain before they are forwarded. The pipe asks for
 * every chunk it forwards and forwards exactly what was granted.
 */
export interface PipeGate {
  /**
   * Grants up to `bytes` of credit in `direction` and counts the granted bytes
   * as forwarded. Returns the number granted, `0` when no credit is left.
   */
  take: (bytes: number, direction: PipeDirection) => number
  /**
   * Resolves once {@link take} may grant again; rejects when `signal` aborts
   * or the credit will never come (the session was revoked).
   */
  waitForCredit: (signal: AbortSignal) => Promise<void>
}

/** Options of {@link pipeStreamSocket}. */
export interface PipeOptions {
  /** Credit gate; without one every byte is forwarded at once. */
  gate?: PipeGate
  /** Called after bytes were handed to the other side. */
  onForward?: (bytes: number, direction: PipeDirection) => void
  /** Abort both sides when no byte moves either way for this long (not counted while waiting for credit). Default 5 minutes. */
  idleTimeoutMs?: number
  /**
   * Bytes the stream may buffer while paused. It must exceed twice the
   * muxer's receive window (data in flight after a pause plus the unforwarded
   * remainder put back), else the stream resets itself. Default 34 MiB, for
   * yamux's default 16 MiB maximum window.
   */
  maxReadBufferLength?: number
  /** Aborting it destroys both sides with the signal's reason. */
  signal?: AbortSignal
}

/** What a finished pipe moved. */
export interface PipeResult {
  /** Bytes written to the socket (read from the stream). */
  bytesToSocket: number
  /** Bytes sent on the stream (read from the socket). */
  bytesToStream: number
}

/** No byte moved either way for longer than the idle timeout. */
export class PipeIdleTimeoutError extends SparebandError {
  constructor (idleTimeoutMs: number) {
    super('ERR_RELAY_IDLE_TIMEOUT', `no data moved for ${idleTimeoutMs} ms; the connection was closed, open a new one`)
  }
}

/** One side of the pipe failed, so the other was torn down too. */
export class PipeBrokenError extends SparebandError {
  constructor (side: 'stream' | 'socket', cause: unknown) {
    super('ERR_RELAY_PIPE_BROKEN', `the ${side} side of the relayed connection failed (${(cause as Error)?.message ?? String(cause)}); the connection was closed`, { cause })
  }
}

const DEFAULT_IDLE_TIMEOUT_MS = 5 * 60_000
const DEFAULT_MAX_READ_BUFFER_LENGTH = 34 * 1024 * 1024

/**
 * Pipes `stream` and `socket` into each other until both directions have
 * ended. Resolves with the byte counts once both sides are closed; rejects
 * (after destroying both sides) if either fails, idles out or `signal` aborts.
 * The socket must have been created with `allowHalfOpen: true`.
 */
export async function pipeStreamSocket (stream: Stream, socket: Socket, opts: PipeOptions = {}): Promise<PipeResult> {
  const gate = opts.gate
  const idleTimeoutMs = opts.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS
  const result: PipeResult = { bytesToSocket: 0, bytesToStream: 0 }
  const done = deferred<PipeResult>()
  const lifetime = new AbortController()
  stream.maxReadBufferLength = Math.max(stream.maxReadBufferLength, opts.maxReadBufferLength ?? DEFAULT_MAX_READ_BUFFER_LENGTH)

  let failed = false
  let streamClosed = stream.status !== 'open'
  let socketClosed = socket.destroyed
  let socketEnded = false // socket's readable side ended
  let pendingToStream: Buffer | undefined // read from the socket, waiting for credit
  let waitingForCredit = 0
  let waitingForStreamDrain = false
  let waitingForSocketDrain = false

  const idle = setTimeout(() => { fail(new PipeIdleTimeoutError(idleTimeoutMs)) }, idleTimeoutMs)
  idle.unref()
  const touch = (): void => { if (waitingForCredit === 0) idle.refresh() }

  function fail (err: Error): void {
    if (failed) return
    failed = true
    cleanup()
    if (stream.status === 'open' || stream.status === 'closing') stream.abort(err)
    socket.destroy()
    done.reject(err)
  }

  function maybeFinish (): void {
    if (failed || !streamClosed || !socketClosed) return
    cleanup()
    done.resolve(result)
  }

  function cleanup (): void {
    clearTimeout(idle)
    lifetime.abort()
    opts.signal?.removeEventListener('abort', onAbort)
    stream.removeEventListener('message', onStreamMessage)
    stream.removeEventListener('end', onStreamEnd)
    stream.removeEventListener('close', onStreamClose)
    stream.removeEventListener('drain', onStreamDrain)
    socket.off('data', onSocketData)
    socket.off('end', onSocketEnd)
    socket.off('drain', onSocketDrain)
    socket.off('error', onSocketError)
    socket.off('close', onSocketClose)
  }

  function waitCredit (then: () => void): void {
    if (gate == null) return
    waitingForCredit++
    clearTimeout(idle)
    gate.waitForCredit(lifetime.signal).then(() => {
      waitingForCredit--
      if (failed) return
      idle.refresh()
      then()
    }, (err: Error) => {
      waitingForCredit--
      fail(err)
    })
  }

  // ---- stream → socket -------------------------------------------------

  function onStreamMessage (evt: StreamMessageEvent): void {
    const data = evt.data
    const total = data.byteLength
    let offset = 0
    while (offset < total) {
      const granted = gate == null ? total - offset : gate.take(total - offset, 'stream-to-socket')
      if (granted <= 0) {
        holdStream(data.subarray(offset))
        waitCredit(resumeStream)
        return
      }
      const chunk = data.subarray(offset, offset + granted)
      offset += granted
      result.bytesToSocket += granted
      const ok = socket.write(chunk)
      opts.onForward?.(granted, 'stream-to-socket')
      touch()
      if (!ok) {
        if (offset < total) holdStream(data.subarray(offset))
        else stream.pause()
        waitingForSocketDrain = true
        return
      }
    }
  }

  /** Pauses the stream and puts `rest` back at the front of its read buffer. */
  function holdStream (rest: Uint8Array): void {
    stream.pause()
    stream.unshift(rest)
  }

  function resumeStream (): void {
    if (stream.readStatus === 'paused') stream.resume()
  }

  function onSocketDrain (): void {
    if (!waitingForSocketDrain) return
    waitingForSocketDrain = false
    resumeStream()
  }

  function onStreamEnd (): void {
    // the remote closed its writable end and everything it sent was delivered
    socket.end()
  }

  // ---- socket → stream -------------------------------------------------

  function onSocketData (chunk: Buffer): void {
    if (pendingToStream != null) pendingToStream = Buffer.concat([pendingToStream, chunk])
    else forwardToStream(chunk)
  }

  function forwardToStream (chunk: Buffer): void {
    let offset = 0
    while (offset < chunk.byteLength) {
      const granted = gate == null ? chunk.byteLength - offset : gate.take(chunk.byteLength - offset, 'socket-to-stream')
      if (granted <= 0) {
        socket.pause()
        pendingToStream = chunk.subarray(offset)
        waitCredit(flushPendingToStream)
        return
      }
      const piece = chunk.subarray(offset, offset + granted)
      offset += granted
      let ok: boolean
      try {
        ok = stream.send(piece)
      } catch (err) {
        fail(new PipeBrokenError('stream', err))
        return
      }
      result.bytesToStream += granted
      opts.onForward?.(granted, 'socket-to-stream')
      touch()
      if (!ok) {
        socket.pause()
        if (offset < chunk.byteLength) pendingToStream = chunk.subarray(offset)
        waitingForStreamDrain = true
        return
      }
    }
    if (socketEnded) closeStreamWrite()
  }

  function flushPendingToStream (): void {
    const pending = pendingToStream
    pendingToStream = undefined
    if (pending != null) {
      forwardToStream(pending)
      if (pendingToStream != null || waitingForStreamDrain || waitingForCredit > 0) return
    }
    if (socketEnded) closeStreamWrite()
    else socket.resume()
  }

  function onStreamDrain (): void {
    if (!waitingForStreamDrain) return
    waitingForStreamDrain = false
    flushPendingToStream()
  }

  function onSocketEnd (): void {
    socketEnded = true
    if (pendingToStream == null && !waitingForStreamDrain && waitingForCredit === 0) closeStreamWrite()
  }

  function closeStreamWrite (): void {
    if (stream.writeStatus !== 'writable') return
    stream.close().catch((err: Error) => { fail(new PipeBrokenError('stream', err)) })
  }

  // ---- lifecycle -------------------------------------------------------

  function onStreamClose (evt: StreamCloseEvent): void {
    // a clean close means both writable ends are closed; bytes still in the
    // read buffer are delivered by 'message' and followed by 'end'
    streamClosed = true
    if (evt.error != null) fail(new PipeBrokenError('stream', evt.error))
    else maybeFinish()
  }

  function onSocketError (err: Error): void {
    fail(new PipeBrokenError('socket', err))
  }

  function onSocketClose (hadError: boolean): void {
    socketClosed = true
    if (hadError) return // 'error' already failed the pipe
    if (!(socketEnded && socket.writableFinished)) {
      fail(new PipeBrokenError('socket', new Error('socket closed before the connection finished')))
      return
    }
    maybeFinish()
  }

  function onAbort (): void {
    fail(opts.signal?.reason instanceof Error ? opts.signal.reason : new PipeBrokenError('stream', opts.signal?.reason))
  }

  if (opts.signal?.aborted === true) {
    onAbort()
    return await done.promise
  }
  opts.signal?.addEventListener('abort', onAbort, { once: true })
  stream.addEventListener('message', onStreamMessage)
  stream.addEventListener('end', onStreamEnd)
  stream.addEventListener('close', onStreamClose)
  stream.addEventListener('drain', onStreamDrain)
  socket.on('data', onSocketData)
  socket.on('end', onSocketEnd)
  socket.on('drain', onSocketDrain)
  socket.on('error', onSocketError)
  socket.on('close', onSocketClose)
  socket.resume()
  if (stream.readableEnded) onStreamEnd()
  if (streamClosed) fail(new PipeBrokenError('stream', new Error(`stream is already ${stream.status}`)))
  if (socketClosed) fail(new PipeBrokenError('socket', new Error('socket is already closed')))
  return await done.promise
}

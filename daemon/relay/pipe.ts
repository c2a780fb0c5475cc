/**
 * Byte pipe between a libp2p stream and a TCP socket, with backpressure both
 * ways, half-close propagation, credit gating and an idle timeout.
 *
 * - socket → stream: `stream.send()` returning false pauses the socket until
 *   the stream's `'drain'` event.
 * - stream → socket: `socket.write()` returning false pauses the stream (which
 *   stops yamux window updates, so the remote stops sending) until the
 *   socket's `'drain'` event.
 * - The socket's `'end'` closes the stream's writable end; the stream's `'end'`
 *   (remote closed its writable end, read buffer empty) ends the socket.
 * - An error or reset on either side destroys the other.
 * - A {@link PipeGate} grants credit before bytes are forwarded; with none
 *   left, both directions stop reading until {@link PipeGate.waitForCredit}.
 */
import { SparebandError } from '../../protocol/errors.ts'
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
  const done = Promise.withResolvers<PipeResult>()
  const lifetime = new AbortController()
  stream.maxReadBufferLength = Math.max(stream.maxReadBufferLength, opts.maxReadBufferLength ?? DEFAULT_MAX_READ_BUFFER_LENGTH)

  let failed = false
  let streamClosed = stream.status !== 'open'
  let socketClosed = socket.destroyed
  let socketEnded = false // socket's readable side ended
  let streamEnded = false // stream's readable side ended
  let pendingToStream: Buffer | undefined // read from the socket, waiting for credit
  let pendingToSocket: Buffer | undefined // read from the stream, waiting for credit
  let resuming = false
  let pauseAfterResume = false
  const waitingForCredit: Record<PipeDirection, boolean> = { 'stream-to-socket': false, 'socket-to-stream': false }
  let waitingForStreamDrain = false
  let waitingForSocketDrain = false

  // one timer checks the time of the last byte moved; waiting for credit does not count as idle
  let lastActivity = performance.now()
  const touch = (): void => { lastActivity = performance.now() }
  const checkIdle = (): void => {
    const waiting = waitingForCredit['stream-to-socket'] || waitingForCredit['socket-to-stream']
    const quietMs = performance.now() - lastActivity
    if (!waiting && quietMs >= idleTimeoutMs) {
      fail(new PipeIdleTimeoutError(idleTimeoutMs))
      return
    }
    idle = setTimeout(checkIdle, waiting ? idleTimeoutMs : idleTimeoutMs - quietMs)
    idle.unref()
  }
  let idle = setTimeout(checkIdle, idleTimeoutMs)
  idle.unref()

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

  /** Waits for credit in one direction, then calls `then`; the wait does not count as idle. */
  function waitCredit (direction: PipeDirection, then: () => void): void {
    if (gate == null) return
    waitingForCredit[direction] = true
    gate.waitForCredit(lifetime.signal).then(() => {
      waitingForCredit[direction] = false
      if (lifetime.signal.aborted) return
      touch()
      then()
    }, (err: Error) => {
      waitingForCredit[direction] = false
      if (!lifetime.signal.aborted) fail(err)
    })
  }

  // ---- stream → socket -------------------------------------------------
  //
  // Messages are written to the socket whole, so that nothing goes back into
  // the stream's read buffer: yamux counts a dispatched message as consumed
  // and refills the sender's window on resume, so data put back would pile up
  // by a window per pause. Only bytes without credit are held here, and the
  // stream is resumed only when nothing is held. `stream.resume()` dispatches
  // the buffer and then re-opens the yamux window, undoing a pause made in
  // that dispatch, so such a pause is made after `resume()` returns.

  function onStreamMessage (evt: StreamMessageEvent): void {
    if (pendingToSocket != null) {
      pendingToSocket = Buffer.concat([pendingToSocket, evt.data.subarray()])
      pauseStream()
      return
    }
    forwardToSocket(evt.data)
  }

  function forwardToSocket (data: Uint8Array | StreamMessageEvent['data']): void {
    const total = data.byteLength
    let offset = 0
    let ok = true
    while (offset < total) {
      const granted = gate == null ? total - offset : gate.take(total - offset, 'stream-to-socket')
      if (granted <= 0) {
        pendingToSocket = Buffer.from(data.subarray(offset))
        pauseStream()
        waitCredit('stream-to-socket', flushPendingToSocket)
        break
      }
      ok = writeToSocket(granted === total ? data : data.subarray(offset, offset + granted)) && ok
      offset += granted
      result.bytesToSocket += granted
      opts.onForward?.(granted, 'stream-to-socket')
      touch()
    }
    if (!ok) {
      waitingForSocketDrain = true
      pauseStream()
    }
  }

  /** Writes a message to the socket (a list as one vectored write); false when the socket asks to wait for 'drain'. */
  function writeToSocket (data: Uint8Array | StreamMessageEvent['data']): boolean {
    if (data instanceof Uint8Array) return socket.write(data)
    let ok = true
    socket.cork()
    for (const buf of data) ok = socket.write(buf)
    socket.uncork()
    return ok && !socket.writableNeedDrain
  }

  function flushPendingToSocket (): void {
    const pending = pendingToSocket
    pendingToSocket = undefined
    if (pending != null) forwardToSocket(pending)
    if (pendingToSocket != null || waitingForSocketDrain) return
    if (streamEnded) socket.end()
    else resumeStream()
  }

  function pauseStream (): void {
    if (resuming) pauseAfterResume = true
    else if (stream.readStatus === 'readable') stream.pause()
  }

  function resumeStream (): void {
    if (pendingToSocket != null || waitingForSocketDrain || stream.readStatus !== 'paused') return
    resuming = true
    try {
      stream.resume()
    } finally {
      resuming = false
    }
    if (pauseAfterResume) {
      pauseAfterResume = false
      pauseStream()
    }
  }

  function onSocketDrain (): void {
    if (!waitingForSocketDrain) return
    waitingForSocketDrain = false
    resumeStream()
  }

  function onStreamEnd (): void {
    // the remote closed its writable end and everything it sent was dispatched
    streamEnded = true
    if (pendingToSocket == null) socket.end()
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
        waitCredit('socket-to-stream', flushPendingToStream)
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
      if (pendingToStream != null || waitingForStreamDrain || waitingForCredit['socket-to-stream']) return
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
    if (pendingToStream == null && !waitingForStreamDrain && !waitingForCredit['socket-to-stream']) closeStreamWrite()
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
